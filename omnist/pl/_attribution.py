"""Integrated-gradient attributions of one spot's output: a heat map over its patch and its top genes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from omnist.model import OmniST
from omnist.pl._utils import finish
from omnist.tl._attribution import Attribution
from omnist.tl._attribution import attribution as compute_attribution
from omnist.tl._validate import check_count

# Narrowest figure in inches, so that the two-line title fits over a single panel.
MIN_WIDTH = 7.0


def attribution(
    adata: AnnData,
    *,
    model: OmniST,
    instruction: str,
    spot: int | str,
    genes: Sequence[str] | None = None,
    n_steps: int = 32,
    target: str | None = None,
    labels: Sequence[str] | None = None,
    n_genes: int = 10,
    patches_key: str = "omnist_patches",
    layer: str | None = None,
    cmap: str = "RdBu_r",
    alpha: float = 0.6,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | Axes | None:
    """Draw what drives one spot's output: pixel attributions over its patch and the top genes.

    The attributions come from :func:`omnist.tl.attribution` (integrated gradients from the section-mean
    baseline). For a task that reads the image, the figure shows the patch, the signed attribution map and the
    map over the patch. For a task that reads expression, it shows the genes with the largest attributions.

    Parameters
    ----------
    adata
        The section the spot belongs to.
    model, instruction, spot, n_steps, target, labels, patches_key, layer
        Passed to :func:`omnist.tl.attribution`.
    genes
        Genes to draw in the bar chart; defaults to the ``n_genes`` genes with the largest absolute attribution.
    n_genes
        Number of genes drawn when ``genes`` is None.
    cmap
        Diverging colormap of the pixel attributions, centred on 0.
    alpha
        Opacity of the attribution map over the patch.
    figsize
        Size of the figure in inches.
    ax
        Draw only the main panel into this Axes: the map over the patch for image tasks, else the gene bars.
    show
        Show the figure; when False the figure (or ``ax``) is returned.
    save
        File to write the figure to.

    Returns
    -------
    The figure, or ``ax`` when given, if ``show=False``; else None. ``adata`` is not modified.

    Raises
    ------
    KeyError
        If a gene in ``genes`` has no attribution (not measured or not in the model's vocabulary), and as
        :func:`omnist.tl.attribution` raises.
    """
    result = compute_attribution(
        adata,
        model=model,
        instruction=instruction,
        spot=spot,
        target=target,
        labels=labels,
        n_steps=n_steps,
        patches_key=patches_key,
        layer=layer,
    )
    shown_genes = _shown_genes(result, genes, n_genes)
    title = (
        f"{result.task}: {result.target!r} at spot {result.spot}\n"
        f"score {result.score:.3f}, baseline {result.baseline_score:.3f}, integration error {result.delta:.1e}"
    )

    if ax is not None:
        if result.image is not None:
            _draw_overlay(ax, result, cmap, alpha)
        else:
            _draw_genes(ax, shown_genes, float(result.genes.sum()))
        ax.set_title(title, fontsize=9)
        return finish(ax.figure, ax, show, save)

    panels = 0
    if result.image is not None:
        panels += 3
    if shown_genes is not None:
        panels += 1
    size = figsize or (max(4.0 * panels, MIN_WIDTH), 4.2)
    figure, axes = plt.subplots(1, panels, figsize=size, layout="constrained", squeeze=False)
    axes = list(axes[0])
    if result.image is not None:
        patch_ax, map_ax, overlay_ax = axes[:3]
        patch_ax.imshow(result.patch)
        patch_ax.set_title("H&E patch")
        image = map_ax.imshow(result.image, cmap=cmap, norm=_centred(result.image))
        map_ax.set_title(f"pixel attribution (sum {result.image.sum():.3f})")
        figure.colorbar(image, ax=map_ax, shrink=0.8)
        _draw_overlay(overlay_ax, result, cmap, alpha)
        overlay_ax.set_title("attribution over the patch")
        for panel in (patch_ax, map_ax, overlay_ax):
            panel.set_xticks([])
            panel.set_yticks([])
    if shown_genes is not None:
        _draw_genes(axes[-1], shown_genes, float(result.genes.sum()))
    figure.suptitle(title, fontsize=10)
    return finish(figure, figure, show, save)


def _shown_genes(result: Attribution, genes: Sequence[str] | None, n_genes: int):
    genes = [genes] if isinstance(genes, str) else genes
    if result.genes is None:
        if genes is not None:
            raise KeyError(f"Task {result.task!r} does not read expression: genes {list(genes)} have no attribution.")
        return None
    if genes is None:
        check_count(n_genes, "n_genes", 1)
        return result.genes.head(n_genes)
    missing = [gene for gene in genes if gene not in result.genes.index]
    if missing:
        raise KeyError(f"Genes {missing} have no attribution: they are not measured or not in the model's vocabulary.")
    return result.genes.loc[list(genes)]


def _centred(values: np.ndarray) -> TwoSlopeNorm:
    limit = float(np.abs(values).max()) or 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)


def _draw_overlay(ax: Axes, result: Attribution, cmap: str, alpha: float) -> None:
    ax.imshow(result.patch)
    ax.imshow(result.image, cmap=cmap, norm=_centred(result.image), alpha=alpha)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_genes(ax: Axes, shown_genes, total: float) -> None:
    names = [str(name) for name in shown_genes.index]
    values = shown_genes.to_numpy(dtype=np.float64)
    colours = np.where(values >= 0, "tab:red", "tab:blue")
    bars = ax.barh(np.arange(len(names)), values, color=colours)
    ax.bar_label(bars, fmt="%.3f", fontsize=8, padding=2)
    ax.set_yticks(np.arange(len(names)), names)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution")
    ax.margins(x=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.set_title(f"expression attribution (all genes sum to {total:.3f})")
