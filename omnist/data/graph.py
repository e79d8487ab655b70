"""Spatial neighbours of each spot from squidpy, with offsets in µm."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import squidpy as sq
from anndata import AnnData

DEFAULT_N_NEIGHBOURS = 6

# squidpy logs each graph it builds through this logger at INFO level, straight to the console.
_SQUIDPY_LOGGER = "spatialdata._logging"


@contextmanager
def _quiet_graph_log() -> Iterator[None]:
    """Hold squidpy's per-call graph message back; omnist builds a graph for every section it reads."""
    logger = logging.getLogger(_SQUIDPY_LOGGER)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def neighbour_table(adata: AnnData, n_neighs: int = DEFAULT_N_NEIGHBOURS) -> np.ndarray:
    """Return neighbour indices ``(N, n_neighs)`` (-1 = none) from ``obsp["spatial_connectivities"]``.

    When ``adata`` has no graph yet, a k-nearest-neighbour graph is built on a copy of the coordinates, so
    ``adata`` is not modified. It uses ``squidpy.gr.spatial_neighbors_knn`` (squidpy 1.8 and later), else
    ``squidpy.gr.spatial_neighbors``.
    """
    if "spatial_connectivities" in adata.obsp:
        graph = adata.obsp["spatial_connectivities"]
    else:
        if "spatial" not in adata.obsm:
            raise KeyError("adata.obsm['spatial'] is missing: the spatial graph needs spot coordinates.")
        finite = np.isfinite(np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]).all(axis=1)
        if not finite.all():
            raise ValueError(
                f"adata.obsm['spatial'] has NaN or infinite coordinates for {int((~finite).sum())} spots, e.g. "
                f"{list(adata.obs_names[~finite][:3])}: drop those spots, e.g. adata = adata[finite_mask].copy()."
            )
        view = AnnData(obs=adata.obs[[]], obsm={"spatial": np.asarray(adata.obsm["spatial"])[:, :2]})
        k = min(n_neighs, max(adata.n_obs - 1, 1))
        with _quiet_graph_log():
            if hasattr(sq.gr, "spatial_neighbors_knn"):
                sq.gr.spatial_neighbors_knn(view, n_neighs=k)
            else:
                sq.gr.spatial_neighbors(view, coord_type="generic", n_neighs=k)
        graph = view.obsp["spatial_connectivities"]
    graph = graph.tocsr()
    table = np.full((adata.n_obs, n_neighs), -1, dtype=np.int64)
    coordinates = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    for row in range(adata.n_obs):
        neighbours = graph.indices[graph.indptr[row] : graph.indptr[row + 1]]
        neighbours = neighbours[neighbours != row]
        if len(neighbours) > n_neighs:
            distance = np.linalg.norm(coordinates[neighbours] - coordinates[row], axis=1)
            neighbours = neighbours[np.argsort(distance, kind="stable")[:n_neighs]]
        table[row, : len(neighbours)] = neighbours
    return table


def neighbour_offsets(adata: AnnData, table: np.ndarray, microns_per_pixel: float) -> np.ndarray:
    """Return ``(N, K, 2)`` offsets in µm from each spot to its neighbours (0 where there is none)."""
    coordinates = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    offsets = coordinates[np.maximum(table, 0)] - coordinates[:, None, :]
    offsets[table < 0] = 0.0
    return (offsets * microns_per_pixel).astype(np.float32)
