"""Measured against predicted expression on the tissue image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from matplotlib.figure import Figure

from omnist.data.expression import log1p_cp10k
from omnist.pl._utils import tissue


def translation(
    adata: AnnData,
    key: str,
    genes: Sequence[str] | None = None,
    *,
    n_genes: int = 4,
    library_id: str | None = None,
    img_key: str | None = "hires",
    crop_coord: tuple[int, int, int, int] | None = None,
    size: float = 1.0,
    cmap: str = "viridis",
    layer: str | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | None:
    """Draw measured and predicted expression side by side on the tissue, with Pearson r in each title.

    Parameters
    ----------
    adata
        Spots with measured counts and predictions in ``obsm[key]`` from :func:`omnist.tl.translate`.
    key
        ``obsm`` key of the predictions (a DataFrame with gene-symbol columns).
    genes
        Genes to draw. Defaults to the ``n_genes`` predicted genes with the highest Pearson r.
    n_genes
        Number of genes when ``genes`` is None.
    library_id, img_key, crop_coord, size, cmap
        Passed to :func:`scanpy.pl.spatial`; ``img_key=None`` draws the spots without the image.
    layer
        Layer with raw counts instead of ``X``.
    show
        Show the figure; when False the figure is returned.
    save
        File to write the figure to.

    Returns
    -------
    The figure when ``show=False``, else None. ``adata`` is not modified.

    Raises
    ------
    KeyError
        If ``obsm[key]`` is missing, a gene in ``genes`` is not both predicted and measured, or ``img_key`` is
        given and the image ``uns["spatial"][library_id]["images"][img_key]`` is missing.
    ValueError
        If ``genes`` is empty, ``n_genes`` < 1, ``obsm[key]`` repeats a gene, or no predicted gene is measured.
    """
    if key not in adata.obsm or not isinstance(adata.obsm[key], pd.DataFrame):
        raise KeyError(f"adata.obsm[{key!r}] is missing or not a DataFrame: run omnist.tl.translate first.")
    predicted = adata.obsm[key]
    if predicted.columns.duplicated().any():
        repeated = sorted(set(predicted.columns[predicted.columns.duplicated()]))
        raise ValueError(f"adata.obsm[{key!r}] has duplicated gene columns {repeated}: keep one column per gene.")
    if genes is None and n_genes < 1:
        raise ValueError(f"Invalid n_genes={n_genes}: pass at least 1.")
    genes = [genes] if isinstance(genes, str) else genes
    if genes is not None and not len(genes):
        raise ValueError("genes is empty: pass at least one gene, or None for the best-predicted ones.")
    drawn = tissue(adata, library_id=library_id, img_key=img_key)
    names = _var_names_by_symbol(adata)
    measured_genes = [gene for gene in predicted.columns if str(gene).upper() in names]
    if not measured_genes:
        raise ValueError(
            f"None of the predicted genes in obsm[{key!r}] is measured in adata (var_names or var['gene_symbol'])."
        )
    var_names = [names[str(gene).upper()] for gene in measured_genes]
    measured = pd.DataFrame(log1p_cp10k(adata, var_names, layer), index=adata.obs_names, columns=measured_genes)
    r = measured.corrwith(predicted[measured_genes]).fillna(0.0)
    if genes is None:
        genes = list(r.sort_values(ascending=False).index[:n_genes])
    missing = [gene for gene in genes if gene not in measured_genes]
    if missing:
        raise KeyError(f"Genes {missing} are not both predicted in obsm[{key!r}] and measured in adata.")

    plot_obs = pd.DataFrame(index=adata.obs_names)
    titles = []
    for gene in genes:
        plot_obs[f"measured {gene}"] = measured[gene].to_numpy()
        plot_obs[f"predicted {gene}"] = predicted[gene].to_numpy(dtype=np.float64)
        titles += [f"{gene} measured", f"{gene} predicted (r = {r[gene]:.2f})"]
    library_id = drawn.library_id
    view = AnnData(obs=plot_obs, obsm={"spatial": np.asarray(adata.obsm["spatial"])}, uns={})
    if library_id is not None:
        view.uns["spatial"] = {library_id: adata.uns["spatial"][library_id]}

    sc.pl.spatial(
        view,
        color=list(plot_obs.columns),
        title=titles,
        library_id=library_id,
        img_key=img_key if library_id is not None else None,
        crop_coord=crop_coord,
        size=size,
        cmap=cmap,
        ncols=2,
        show=False,
        spot_size=None if library_id is not None else 2 * drawn.radius,
    )
    figure = plt.gcf()
    if save is not None:
        figure.savefig(save, dpi=100, bbox_inches="tight")
    if show is None or show:
        plt.show()
        return None
    return figure


def _var_names_by_symbol(adata: AnnData) -> dict[str, str]:
    """Map upper-case gene symbols and var_names to var_names; ``var["gene_symbol"]`` wins where both match."""
    names = {str(name).upper(): str(name) for name in adata.var_names}
    if "gene_symbol" in adata.var:
        for name, symbol in zip(adata.var_names, adata.var["gene_symbol"], strict=True):
            if isinstance(symbol, str) and symbol:
                names[symbol.upper()] = str(name)
    return names
