"""Cut one H&E patch per spot into ``obsm``."""

from __future__ import annotations

import logging
import time

import numpy as np
from anndata import AnnData

from omnist.data.patches import outside_image, read_patches
from omnist.data.spatial import get_library_id, image_source, microns_per_pixel, spot_diameter_um

logger = logging.getLogger(__name__)

# Default window: the spot plus a margin of a quarter spot diameter on each side.
DEFAULT_WINDOW_SPOT_DIAMETERS = 1.5
DEFAULT_OUT_PX = 64


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
    if size_um is not None and size_px is not None:
        raise ValueError(f"Pass size_um or size_px, not both (got size_um={size_um}, size_px={size_px}).")
    if out_px < 8:
        raise ValueError(f"out_px={out_px} is too small: use at least 8 pixels.")
    if "spatial" not in adata.obsm:
        raise KeyError("adata.obsm['spatial'] is missing: patch centres need spot coordinates in pixels.")
    if adata.n_obs == 0:
        raise ValueError("adata has no spots.")

    library_id = get_library_id(adata, library_id)
    source = image_source(adata, library_id)
    if size_px is None:
        pixel_um = microns_per_pixel(adata, library_id)
        if size_um is None:
            size_um = DEFAULT_WINDOW_SPOT_DIAMETERS * spot_diameter_um(adata, library_id)
        size_px = size_um / pixel_um
    else:
        pixel_um = _pixel_size_or_nan(adata, library_id)
        size_um = size_px * pixel_um
    if not size_px > 0:
        raise ValueError(f"The patch window must be positive (got {size_px} px).")

    centres = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    outside = outside_image(source, centres)
    if outside.any():
        names = ", ".join(adata.obs_names[outside][:5])
        height, width = source.shape
        raise ValueError(
            f"{int(outside.sum())} spots lie outside the {width} × {height} px image of library {library_id!r} "
            f"(e.g. {names}). Check that obsm['spatial'] is in full-resolution pixels, or subset those spots out."
        )

    logger.info("extracting %d patches of %.0f µm (%.0f px) at %d px", adata.n_obs, size_um, size_px, out_px)
    patches = read_patches(source, centres, size_px, out_px, progress=progress)

    adata = adata.copy() if copy else adata
    adata.obsm[key_added] = patches
    adata.uns.setdefault("omnist", {})["patches"] = {
        "size_um": float(size_um),
        "size_px": float(size_px),
        "out_px": int(out_px),
        "library_id": library_id,
        "key": key_added,
    }
    logger.info("finished extracting patches (%.1f s)", time.perf_counter() - start)
    return adata if copy else None


def _pixel_size_or_nan(adata: AnnData, library_id: str) -> float:
    try:
        return microns_per_pixel(adata, library_id)
    except KeyError:
        return float("nan")
