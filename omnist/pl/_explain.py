"""One region's explanation on the tissue: the region on the H&E, the sentences and the evidence behind them."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from omnist._warnings import warn
from omnist.pl._utils import Tissue, category_colour, draw_image, finish, set_view, spot_circles, tissue
from omnist.tl._regions import region_key
from omnist.tl._validate import check_count

# Opacity of the white veil over the tissue outside the region.
DIM_ALPHA = 0.75
# The region's outline encloses discs of this many spot pitches around its spots, so neighbouring spots merge.
OUTLINE_PITCHES = 0.6
TEXT_WIDTH_CHARACTERS = 100


def spatial_explain(
    adata: AnnData,
    *,
    groupby: str,
    group: str,
    key: str = "omnist_explain",
    library_id: str | None = None,
    img_key: str | None = "hires",
    crop_coord: tuple[int, int, int, int] | None = None,
    size: float = 1.0,
    palette: str | Sequence | Mapping | None = None,
    n_cell_types: int = 8,
    figsize: tuple[float, float] = (18.0, 8.0),
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | Axes | None:
    """Draw a region's explanation: the region outlined on the H&E with the rest dimmed, the text, the evidence.

    The figure has the tissue on the left, the explanation above, and bar charts of the identity scores (with
    the H&E-only scores when present), the marker-gene scores and the composition below.

    Parameters
    ----------
    adata
        A section explained by :func:`omnist.tl.explain`.
    groupby
        The ``obs`` column of regions the explanation was computed for.
    group
        The region to draw.
    key
        ``uns`` key of the explanations.
    library_id, img_key, crop_coord, size
        As in :func:`scanpy.pl.spatial`: the library in ``uns["spatial"]``, the image resolution
        (``img_key=None`` draws the spots without an image), ``(left, right, top, bottom)`` in full-resolution
        pixels, and a factor on the spot size.
    palette
        Colour of the outline: a mapping from region to colour, colours in category order or a colormap name.
        Defaults to ``uns[f"{groupby}_colors"]``, else scanpy's default palette.
    n_cell_types
        Cell types drawn in the composition bars.
    figsize
        Size of the figure in inches.
    ax
        Draw only the tissue panel into this Axes.
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
        If ``uns[key]`` has no explanation of ``group``, ``groupby`` is not an ``obs`` column, or the image
        ``uns["spatial"][library_id]["images"][img_key]`` is missing.
    ValueError
        If the explanations were computed for another ``groupby``, the region has no spots any more, or
        ``n_cell_types`` is not a positive integer.

    Warns
    -----
    UserWarning
        If the region's spot count differs from the one it was explained with.
    """
    group = str(group)
    check_count(n_cell_types, "n_cell_types", 1)
    record, params = _explanation(adata, key, groupby, group)
    view = tissue(adata, library_id=library_id, img_key=img_key, size=size)
    mask = (adata.obs[groupby].astype(str) == group).to_numpy()
    if not mask.any():
        raise ValueError(
            f"Region {group!r} has no spots in adata.obs[{groupby!r}] any more: rerun omnist.tl.explain after "
            "changing the regions."
        )
    if int(mask.sum()) != int(record["n_spots"]):
        warn(
            f"Region {group!r} has {int(mask.sum())} spots in adata.obs[{groupby!r}] but was explained with "
            f"{int(record['n_spots'])}: rerun omnist.tl.explain after changing the regions.",
        )
    colour = category_colour(adata, groupby, group, palette)
    identity = record["identity"]
    uncertain = float(record.get("margin", np.nan)) < float(params.get("uncertain_margin", -np.inf))
    title = f"{group}: {identity['label'].iloc[0]} (score {identity['score'].iloc[0]:.3f}"
    title += ", uncertain)" if uncertain else ")"

    if ax is not None:
        _draw_region(ax, view, mask, colour, crop_coord)
        ax.set_title(title)
        return finish(ax.figure, ax, show, save)

    figure = plt.figure(figsize=figsize, layout="constrained")
    grid = figure.add_gridspec(2, 4, width_ratios=[2.2, 1, 1, 1], height_ratios=[0.6, 1])
    tissue_ax = figure.add_subplot(grid[:, 0])
    _draw_region(tissue_ax, view, mask, colour, crop_coord)
    tissue_ax.set_title(title)
    _draw_text(figure.add_subplot(grid[0, 1:]), record["text"])
    _draw_identity(figure.add_subplot(grid[1, 1]), record)
    _draw_markers(figure.add_subplot(grid[1, 2]), record["markers"])
    _draw_composition(figure.add_subplot(grid[1, 3]), record, n_cell_types)
    figure.suptitle(f"Region {group} of {groupby} ({record['n_spots']} spots)")
    return finish(figure, figure, show, save)


def _explanation(adata: AnnData, key: str, groupby: str, group: str) -> tuple[Mapping, Mapping]:
    """Return the explanation of ``group`` and the params of ``uns[key]``."""
    if key not in adata.uns:
        raise KeyError(f"adata.uns[{key!r}] is missing: run omnist.tl.explain(adata, groupby={groupby!r}) first.")
    explanations = adata.uns[key]
    params = explanations.get("params", {})
    if groupby not in adata.obs:
        raise KeyError(f"groupby {groupby!r} is not a column of adata.obs; columns: {list(adata.obs.columns)}.")
    if params.get("groupby", groupby) != groupby:
        raise ValueError(
            f"adata.uns[{key!r}] explains regions of {params['groupby']!r}, not {groupby!r}: pass "
            f"groupby={params['groupby']!r} or run omnist.tl.explain with groupby={groupby!r}."
        )
    names = [str(name) for name in params.get("groups", [])] or [name for name in explanations if name != "params"]
    if str(group) not in names or region_key(group) not in explanations:
        raise KeyError(f"adata.uns[{key!r}] has no explanation of {group!r}; explained regions: {names}.")
    record = explanations[region_key(group)]
    if not isinstance(record, Mapping) or "identity" not in record:
        raise KeyError(f"adata.uns[{key!r}] has no omnist.tl.explain results: pass the key_added of explain.")
    return record, params


def _draw_region(ax: Axes, view: Tissue, mask: np.ndarray, colour, crop_coord) -> None:
    """Draw the tissue with the region outlined and everything else behind a white veil."""
    draw_image(ax, view)
    if view.image is None:
        spot_circles(ax, view.centres[~mask], view.radius, facecolor="lightgrey", edgecolor="none", alpha=0.5)
        spot_circles(ax, view.centres[mask], view.radius, facecolor=colour, edgecolor="black", linewidth=0.5)
    else:
        height, width = view.image.shape[:2]
        inside = _disc_mask((height, width), view.centres[mask], OUTLINE_PITCHES * view.pitch)
        veil = np.ones((height, width, 4), dtype=np.float32)
        veil[..., 3] = np.where(inside, 0.0, DIM_ALPHA)
        ax.imshow(veil, origin="upper", interpolation="nearest")
        if inside.any():
            ax.contour(inside.astype(np.float32), levels=[0.5], colors=[colour], linewidths=2.0)
    set_view(ax, view, crop_coord)


def _disc_mask(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    """Return a boolean image that is True within ``radius`` pixels of any of ``centres`` (x, y)."""
    mask = np.zeros(shape, dtype=bool)
    height, width = shape
    reach = int(np.ceil(radius))
    offsets = np.arange(-reach, reach + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    for x, y in np.round(centres).astype(int):
        y0, x0 = y - reach, x - reach
        top, left = max(y0, 0), max(x0, 0)
        bottom, right = min(y + reach + 1, height), min(x + reach + 1, width)
        if bottom <= top or right <= left:
            continue
        mask[top:bottom, left:right] |= disc[top - y0 : bottom - y0, left - x0 : right - x0]
    return mask


def _draw_text(ax: Axes, text: str) -> None:
    ax.axis("off")
    wrapped = textwrap.fill(text, width=TEXT_WIDTH_CHARACTERS)
    ax.text(0.0, 1.0, wrapped, va="top", ha="left", fontsize=10, transform=ax.transAxes)
    ax.set_title("Explanation", loc="left")


def _barh(ax: Axes, names, values, colour, label: str | None = None, offset: float = 0.0, height: float = 0.8):
    positions = np.arange(len(names)) + offset
    bars = ax.barh(positions, values, height=height, color=colour, label=label)
    ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    ax.margins(x=0.2)
    return bars


def _draw_identity(ax: Axes, record: Mapping) -> None:
    identity: pd.DataFrame = record["identity"]
    labels = identity["label"].astype(str).tolist()
    margin = record.get("margin", float("nan"))
    if "image_identity" in record:
        image = record["image_identity"].set_index("label")["score"].reindex(labels)
        _barh(ax, labels, identity["score"], "tab:blue", "expression", offset=-0.2, height=0.4)
        _barh(ax, labels, image.to_numpy(), "tab:orange", "H&E only", offset=0.2, height=0.4)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=2, fontsize=8, frameon=False)
    else:
        _barh(ax, labels, identity["score"], "tab:blue")
    ax.set_yticks(np.arange(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("identity score")
    ax.set_title(f"Identity (margin {margin:.3f})")


def _draw_markers(ax: Axes, markers: pd.DataFrame) -> None:
    ax.set_title("Marker genes (adjusted p < 0.05)")
    if not len(markers):
        ax.text(0.5, 0.5, "no enriched gene", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    genes = markers["symbol" if "symbol" in markers else "gene"].astype(str).tolist()
    _barh(ax, genes, markers["score"].to_numpy(), "tab:green")
    ax.set_yticks(np.arange(len(genes)), genes)
    ax.invert_yaxis()
    ax.set_xlabel("Wilcoxon z-score")


def _draw_composition(ax: Axes, record: Mapping, n_cell_types: int) -> None:
    composition: pd.DataFrame = record["composition"]
    source = str(record.get("composition_source", ""))
    origin = f"obsm['{source[5:]}']" if source.startswith("obsm:") else "predicted"
    ax.set_title(f"Composition\n{origin}" if len(composition) else "Composition")
    if not len(composition):
        ax.text(0.5, 0.5, "no composition", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    largest = composition.head(n_cell_types)
    names = largest["cell_type"].astype(str).tolist()
    _barh(ax, names, largest["fraction"].to_numpy(), "tab:purple")
    ax.set_yticks(np.arange(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("mean fraction")
