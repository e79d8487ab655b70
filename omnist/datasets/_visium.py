"""Read 10x Genomics Visium (Space Ranger) output folders."""

from __future__ import annotations

import logging
from pathlib import Path

from anndata import AnnData

logger = logging.getLogger(__name__)

VISIUM_SPOT_DIAMETER_UM = 55.0
"""Diameter of a Visium spot in µm."""


def visium(
    path: str | Path,
    *,
    library_id: str | None = None,
    counts_file: str = "filtered_feature_bc_matrix.h5",
    source_image_path: str | Path | None = None,
) -> AnnData:
    """Read a Space Ranger output folder with :func:`squidpy.read.visium` and record the pixel size.

    Parameters
    ----------
    path
        Space Ranger output folder that contains ``counts_file`` and ``spatial/`` (tissue positions,
        ``scalefactors_json.json``, hires and lowres images).
    library_id
        Key under ``uns["spatial"]``. Defaults to the library id stored in the counts file.
    counts_file
        Counts file inside ``path``, usually ``filtered_feature_bc_matrix.h5`` or
        ``raw_feature_bc_matrix.h5``.
    source_image_path
        Full-resolution H&E image the spot positions refer to. Patch extraction reads patches from it.

    Returns
    -------
    The AnnData of :func:`squidpy.read.visium` (counts in ``X``, ``obsm["spatial"]`` in full-resolution
    pixels, ``uns["spatial"][library_id]`` with ``images``, ``scalefactors`` and ``metadata``), with unique
    ``var_names`` and these entries added to ``uns["spatial"][library_id]["metadata"]``:

    - ``"spot_diameter_um"``: 55.0;
    - ``"microns_per_pixel"``: 55 µm divided by ``scalefactors["spot_diameter_fullres"]`` (float);
    - ``"source_image_path"``: absolute path of ``source_image_path`` (str), only when it is given.

    Raises
    ------
    FileNotFoundError
        If ``path``, the counts file, ``spatial/scalefactors_json.json`` or ``source_image_path`` does not
        exist.

    Examples
    --------
    >>> adata = omnist.datasets.visium("outs/", source_image_path="outs/tissue.tif")
    >>> adata.uns["spatial"][next(iter(adata.uns["spatial"]))]["metadata"]["microns_per_pixel"]
    """
    import squidpy as sq

    path = Path(path).expanduser().absolute()
    for required in (path, path / counts_file, path / "spatial" / "scalefactors_json.json"):
        if not required.exists():
            raise FileNotFoundError(f"Space Ranger output not found: {required}")
    if source_image_path is not None:
        source_image_path = Path(source_image_path).expanduser().absolute()
        if not source_image_path.is_file():
            raise FileNotFoundError(f"full-resolution image not found: {source_image_path}")

    logger.info("reading Visium output from %s", path)
    adata = sq.read.visium(path, counts_file=counts_file, library_id=library_id, source_image_path=source_image_path)
    adata.var_names_make_unique()

    for library, spatial in adata.uns["spatial"].items():
        metadata = spatial.setdefault("metadata", {})
        spot_diameter_px = float(spatial["scalefactors"]["spot_diameter_fullres"])
        metadata["spot_diameter_um"] = VISIUM_SPOT_DIAMETER_UM
        metadata["microns_per_pixel"] = VISIUM_SPOT_DIAMETER_UM / spot_diameter_px
        logger.info(
            "read Visium library %s: %d spots x %d genes, %.3f µm per px",
            library,
            adata.n_obs,
            adata.n_vars,
            metadata["microns_per_pixel"],
        )
    return adata
