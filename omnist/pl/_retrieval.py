"""A text query's score over the tissue and the patches of the best-matching spots."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from omnist.data.patches import spot_patches
from omnist.pl._utils import Tissue, draw_image, finish, set_view, spot_circles, tissue
from omnist.tl._validate import check_count

GALLERY_COLUMNS = 4


def retrieval(
    adata: AnnData,
    key: str,
    *,
    patches_key: str = "omnist_patches",
    top_k: int = 8,
    library_id: str | None = None,
    img_key: str | None = "hires",
    crop_coord: tuple[int, int, int, int] | None = None,
    size: float = 1.0,
    cmap: str = "magma",
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Figure | Axes | None:
    """Draw a query's score per spot on the tissue and a gallery of the ``top_k`` best-scoring spot patches.

    Parameters
    ----------
    adata
        Spots scored by a retrieval instruction (``"find ..."``) of :func:`omnist.tl.translate`.
    key
        ``obs`` column of the scores; the query comes from ``uns[key]["query"]`` when present.
    patches_key
        ``obsm`` key of patches; without it the ``top_k`` patches are cut from the image in memory with
        :func:`omnist.data.patches.spot_patches` (1.5 spot diameters wide).
    top_k
        Number of spots in the gallery; they are numbered by rank on the tissue.
    library_id, img_key, crop_coord, size
        As in :func:`scanpy.pl.spatial`; ``img_key=None`` draws the scores without an image.
    cmap
        Colormap of the scores.
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
        If ``obs[key]`` is missing, or an image is needed (``img_key`` given, or no ``obsm[patches_key]``) and
        ``uns["spatial"][library_id]["images"]`` lacks it.
    ValueError
        If ``obs[key]`` is not numeric, has no finite score, ``top_k`` is not an integer of at least 1, or
        ``obsm[patches_key]`` does not hold RGB patches.
    """
    scores = _scores(adata, key)
    check_count(top_k, "top_k", 1)
    view = tissue(adata, library_id=library_id, img_key=img_key, size=size)
    finite = np.flatnonzero(np.isfinite(scores))
    top = finite[np.argsort(-scores[finite], kind="stable")[:top_k]]
    entry = adata.uns.get(key)
    query = str(entry.get("query", key)) if isinstance(entry, Mapping) else key
    title = f"Query: {query} (max {scores[finite].max():.3f})"

    if ax is not None:
        _draw_scores(ax, view, scores, top, cmap, crop_coord)
        ax.set_title(title)
        return finish(ax.figure, ax, show, save)

    patches = _top_patches(adata, top, patches_key, view.library_id)
    rows = math.ceil(len(top) / GALLERY_COLUMNS)
    columns = min(len(top), GALLERY_COLUMNS)
    figure = plt.figure(figsize=figsize or (6 + 2.2 * columns, max(5.0, 2.4 * rows)), layout="constrained")
    outer = figure.add_gridspec(1, 2, width_ratios=[6, 2.2 * columns])
    tissue_ax = figure.add_subplot(outer[0])
    collection = _draw_scores(tissue_ax, view, scores, top, cmap, crop_coord)
    figure.colorbar(collection, ax=tissue_ax, shrink=0.6, label="query probability")
    tissue_ax.set_title(title)
    gallery = outer[1].subgridspec(rows, columns)
    for rank, (index, patch) in enumerate(zip(top, patches, strict=True), start=1):
        patch_ax = figure.add_subplot(gallery[(rank - 1) // columns, (rank - 1) % columns])
        patch_ax.imshow(patch)
        patch_ax.set_xticks([])
        patch_ax.set_yticks([])
        patch_ax.set_title(f"#{rank} {adata.obs_names[index]}\nscore {scores[index]:.3f}", fontsize=9)
    figure.suptitle(f"Top {len(top)} spots for {query!r}")
    return finish(figure, figure, show, save)


def _scores(adata: AnnData, key: str) -> np.ndarray:
    if key not in adata.obs:
        raise KeyError(
            f"adata.obs[{key!r}] is missing: run omnist.tl.translate(adata, 'find ...', key_added={key!r}) first."
        )
    column = adata.obs[key]
    if not pd.api.types.is_numeric_dtype(column):
        raise ValueError(f"adata.obs[{key!r}] has dtype {column.dtype}, not numeric retrieval scores.")
    scores = column.to_numpy(dtype=np.float64)
    if not np.isfinite(scores).any():
        raise ValueError(f"adata.obs[{key!r}] has no finite score.")
    return scores


def _draw_scores(ax: Axes, view: Tissue, scores: np.ndarray, top: np.ndarray, cmap: str, crop_coord):
    draw_image(ax, view)
    finite = np.isfinite(scores)
    norm = Normalize(vmin=float(scores[finite].min()), vmax=float(scores[finite].max()))
    collection = spot_circles(ax, view.centres[finite], view.radius, cmap=cmap, norm=norm, edgecolor="none", alpha=0.85)
    collection.set_array(scores[finite])
    spot_circles(ax, view.centres[top], view.radius * 1.15, facecolor="none", edgecolor="cyan", linewidth=1.5)
    for rank, (x, y) in enumerate(view.centres[top], start=1):
        ax.annotate(str(rank), (x, y), color="cyan", fontsize=8, ha="center", va="center", fontweight="bold")
    set_view(ax, view, crop_coord)
    return collection


def _top_patches(adata: AnnData, top: np.ndarray, patches_key: str, library_id: str | None) -> np.ndarray:
    """Return the patches of the spots ``top`` from ``obsm[patches_key]``, else cut from the image in memory."""
    if patches_key in adata.obsm:
        patches = np.asarray(adata.obsm[patches_key])
        if patches.ndim != 4 or patches.shape[-1] != 3:
            raise ValueError(
                f"adata.obsm[{patches_key!r}] has shape {patches.shape}, not (spots, height, width, 3): pass the "
                "patches_key of omnist.pp.extract_patches."
            )
        return patches[top]
    libraries = adata.uns.get("spatial", {}) or {}
    if library_id is None and len(libraries) == 1:
        library_id = next(iter(libraries))
    if library_id is None or not (libraries.get(library_id, {}) or {}).get("images"):
        raise KeyError(
            f"No patches: adata.obsm[{patches_key!r}] is missing and adata.uns['spatial'][{library_id!r}]['images'] "
            "is missing or empty. Run omnist.pp.extract_patches, or load a section with an image."
        )
    subset = AnnData(
        obs=pd.DataFrame(index=adata.obs_names[top]),
        obsm={"spatial": np.asarray(adata.obsm["spatial"], dtype=np.float64)[top]},
        uns={"spatial": {library_id: libraries[library_id]}},
    )
    patches, _ = spot_patches(subset, library_id=library_id, progress=False)
    return patches
