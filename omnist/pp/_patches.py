"""Cut one H&E patch per spot into ``obsm``."""

from __future__ import annotations

import logging
import time

from anndata import AnnData

from omnist.data.patches import DEFAULT_OUT_PX, spot_patches

logger = logging.getLogger(__name__)


def extract_patches(
    adata: AnnData,
    *,
    size_um: float | None = None,
    size_px: float | None = None,
    out_px: int = DEFAULT_OUT_PX,
    library_id: str | None = None,
    key_added: str = "omnist_patches",
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Cut a square RGB patch centred on each spot from the H&E image and resize it to ``out_px``.

    The window is read from the full-resolution image named in
    ``uns["spatial"][library_id]["metadata"]["source_image_path"]`` when that file exists, otherwise from
    the hires (or lowres) image. JPEG files are decoded at a reduced scale and tiled TIFF files tile by tile,
    so the full-resolution image is never decoded whole when a coarser read is enough. Regions beyond the
    image border are padded with white.

    Parameters
    ----------
    adata
        Spots with ``obsm["spatial"]`` in full-resolution pixels and an image in ``uns["spatial"]``.
    size_um
        Side of the window in µm. Defaults to 1.5 spot diameters.
    size_px
        Side of the window in full-resolution pixels; an alternative to ``size_um``.
    out_px
        Side of the returned patches in pixels (the model's input size).
    library_id
        Library in ``uns["spatial"]``; needed only when there are several.
    key_added
        Patches go to ``obsm[key_added]``, parameters to ``uns["omnist"]["patches"]``.
    progress
        Show a progress bar.
    copy
        Return a new AnnData instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a new AnnData when ``copy=True``. Writes ``obsm[key_added]`` (uint8, spots × out_px ×
    out_px × 3) and ``uns["omnist"]["patches"]`` (``size_um``, ``size_px``, ``out_px``, ``library_id``,
    ``key``).

    Raises
    ------
    ValueError
        If both or neither sizes can be resolved, or spot centres lie outside the image (the message gives
        their count and a few spot names).
    KeyError
        If ``obsm["spatial"]`` or the image is missing.

    Examples
    --------
    >>> adata = omnist.datasets.her2st("C2")
    >>> omnist.pp.extract_patches(adata, size_um=150)
    >>> adata.obsm["omnist_patches"].shape
    (..., 64, 64, 3)
    """
    start = time.perf_counter()
    patches, params = spot_patches(
        adata, size_um=size_um, size_px=size_px, out_px=out_px, library_id=library_id, progress=progress
    )
    adata = adata.copy() if copy else adata
    adata.obsm[key_added] = patches
    adata.uns.setdefault("omnist", {})["patches"] = {**params, "key": key_added}
    logger.info("finished extracting patches (%.1f s)", time.perf_counter() - start)
    return adata if copy else None
