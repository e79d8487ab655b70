"""Checks on user AnnData shared by the tools."""

from __future__ import annotations

import numbers

from anndata import AnnData


def check_adata(adata: AnnData, name: str = "adata", *, require_genes: bool = True) -> None:
    """Raise a ``ValueError`` for an AnnData the tools cannot use: not an AnnData, empty, duplicated names.

    ``require_genes=False`` accepts an AnnData without genes, e.g. spots that only carry an H&E image.
    """
    if not isinstance(adata, AnnData):
        hint = ""
        if type(adata).__name__ == "SpatialData":
            hint = " Convert it first: adata = omnist.datasets.from_spatialdata(sdata, table_key=...)."
        raise TypeError(f"{name} must be an AnnData, got {type(adata).__name__}.{hint}")
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


def check_model(model) -> None:
    """Raise a ``TypeError`` unless ``model`` is a trained :class:`~omnist.model.OmniST`."""
    from omnist.model import OmniST

    if not isinstance(model, OmniST):
        raise TypeError(
            f"model must be an OmniST, got {type(model).__name__}: pass omnist.tl.train(...) output or "
            "omnist.model.OmniST.load(folder)."
        )


def check_key(key: str, name: str = "key_added") -> None:
    """Raise a ``ValueError`` for a results key that an h5ad file cannot store: empty, ".", or containing "/"."""
    if not isinstance(key, str) or not key.strip() or "/" in key or key in (".", ".."):
        raise ValueError(
            f"Invalid {name}={key!r}: pass a non-empty name without '/', which h5ad files use to nest groups."
        )


def check_count(value, name: str, minimum: int) -> None:
    """Raise a ``ValueError`` unless ``value`` is an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"Invalid {name}={value!r}: pass an integer of at least {minimum}.")
