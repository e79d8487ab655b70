"""Expression matrices: validation, log1p(CP10k) normalisation and gene selection across sections."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scanpy as sc
from anndata import AnnData
from scipy import sparse

from omnist._warnings import warn

# Non-integer values that all stay below this look log-transformed rather than like counts.
LOG_MAX = 50.0


def counts_matrix(adata: AnnData, layer: str | None = None):
    """Return the counts of ``adata.X`` or ``adata.layers[layer]`` after checking they are finite and ≥ 0."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} is not in adata.layers; available: {list(adata.layers)}.")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError("adata.X is empty: put raw counts in adata.X or pass layer=.")
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if values.size and not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"The counts contain {bad} NaN or infinite values: remove or impute them first.")
    if values.size and values.min() < 0:
        raise ValueError(
            f"The counts contain negative values (min {values.min():.3g}): pass raw counts, not scaled data."
        )
    sample = values.ravel()[:: max(1, values.size // 100_000)]
    if values.size and values.max() < LOG_MAX and not np.array_equal(sample, np.round(sample)):
        where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
        warn(
            f"{where} looks log-transformed (non-integer values up to {values.max():.3g}), but omnist normalises "
            "raw counts itself: pass the raw counts in X or name their layer with layer=.",
        )
    return matrix


def log1p_cp10k(adata: AnnData, genes: Sequence[str] | None = None, layer: str | None = None) -> np.ndarray:
    """Return dense log1p(counts per 10,000) for ``genes`` (all genes when None), leaving ``adata`` unchanged.

    Library sizes come from all genes of the section, as ``scanpy.pp.normalize_total`` computes them.
    """
    counts = counts_matrix(adata, layer)
    normalised = sc.pp.normalize_total(AnnData(X=counts), target_sum=1e4, inplace=False)["X"]
    if genes is not None:
        positions = adata.var_names.get_indexer(list(genes))
        if (positions < 0).any():
            missing = [gene for gene, pos in zip(genes, positions, strict=True) if pos < 0]
            raise KeyError(f"Genes not in adata.var_names: {missing[:10]} ({len(missing)} in all).")
        normalised = normalised[:, positions]
    dense = normalised.toarray() if sparse.issparse(normalised) else np.asarray(normalised)
    return np.log1p(dense).astype(np.float32)


def shared_top_genes(adatas: Sequence[AnnData], n_genes: int) -> list[str]:
    """Return the ``n_genes`` genes present in every AnnData with the highest mean log1p(CP10k) over all spots."""
    shared = set(adatas[0].var_names)
    for adata in adatas[1:]:
        shared &= set(adata.var_names)
    shared_list = sorted(shared)
    if not shared_list:
        raise ValueError("The sections share no gene: check that var_names use the same identifiers.")
    total = np.zeros(len(shared_list))
    n_spots = 0
    for adata in adatas:
        values = log1p_cp10k(adata, shared_list)
        total += values.sum(axis=0)
        n_spots += values.shape[0]
    order = np.argsort(-total / max(n_spots, 1), kind="stable")
    return [shared_list[index] for index in order[:n_genes]]
