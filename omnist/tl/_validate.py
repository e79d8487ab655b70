"""Checks on user AnnData shared by the tools."""

from __future__ import annotations

from anndata import AnnData


def check_adata(adata: AnnData, name: str = "adata", *, require_genes: bool = True) -> None:
    """Raise a ``ValueError`` for an AnnData the tools cannot use: not an AnnData, empty, duplicated names.

    ``require_genes=False`` accepts an AnnData without genes, e.g. spots that only carry an H&E image.
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"{name} must be an AnnData, got {type(adata).__name__}.")
    if adata.n_obs == 0:
        raise ValueError(f"{name} has no spots (n_obs = 0).")
    if adata.n_vars == 0 and require_genes:
        raise ValueError(f"{name} has no genes (n_vars = 0).")
    if not adata.var_names.is_unique:
        duplicated = adata.var_names[adata.var_names.duplicated()].unique()
        raise ValueError(
            f"{name}.var_names contains {len(duplicated)} duplicated names, e.g. {list(duplicated[:5])}: "
            "run adata.var_names_make_unique() first."
        )
    if not adata.obs_names.is_unique:
        raise ValueError(f"{name}.obs_names is not unique: run adata.obs_names_make_unique() first.")
