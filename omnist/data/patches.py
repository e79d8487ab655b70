"""Cut square patches centred on spots out of an image and resize them to the model's input size."""

from __future__ import annotations

import logging

import numpy as np
from anndata import AnnData
from PIL import Image
from tqdm.auto import tqdm

from omnist.data.image import ImageSource, to_uint8_rgb
from omnist.data.spatial import get_library_id, image_source, microns_per_pixel, spot_diameter_um

logger = logging.getLogger(__name__)

# Default window: the spot plus a margin of a quarter spot diameter on each side.
DEFAULT_WINDOW_SPOT_DIAMETERS = 1.5
DEFAULT_OUT_PX = 64

# Padding outside the image: white, the colour of glass and background in bright-field H&E.
PAD_VALUE = 255


def outside_image(source: ImageSource, centres: np.ndarray) -> np.ndarray:
    """Return a boolean mask of spot centres ``(N, 2)`` (x, y, full-resolution px) that lie outside the image."""
    height, width = source.shape
    x, y = centres[:, 0], centres[:, 1]
    return ~((x >= 0) & (x < width) & (y >= 0) & (y < height) & np.isfinite(x) & np.isfinite(y))


def read_patches(
    source: ImageSource,
    centres: np.ndarray,
    window_px: float,
    out_px: int,
    *,
    progress: bool = True,
) -> np.ndarray:
    """Return uint8 patches ``(N, out_px, out_px, 3)`` centred on ``centres`` (x, y in full-resolution px).

    Each patch covers ``window_px`` full-resolution pixels per side. The image is read at the coarsest
    resolution that still gives ``out_px`` pixels per patch, and regions beyond the border are padded with
    white.
    """
    array, scale = source.pixels(window_px / out_px)
    channel_first = array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4)
    height, width = array.shape[1:3] if channel_first else array.shape[:2]
    half = window_px * scale / 2.0
    out = np.empty((len(centres), out_px, out_px, 3), dtype=np.uint8)

    for index in tqdm(range(len(centres)), desc="patches", disable=not progress, leave=False):
        cx, cy = centres[index] * scale
        x0, y0 = int(round(cx - half)), int(round(cy - half))
        side = max(1, int(round(2 * half)))
        crop = np.full((side, side, 3), PAD_VALUE, dtype=np.uint8)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
        if sx1 > sx0 and sy1 > sy0:
            if channel_first:
                region = np.moveaxis(np.asarray(array[:, sy0:sy1, sx0:sx1]), 0, -1)
            else:
                region = np.asarray(array[sy0:sy1, sx0:sx1])
            crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = to_uint8_rgb(region)
        if side != out_px:
            resample = Image.Resampling.BOX if side > out_px else Image.Resampling.BILINEAR
            crop = np.asarray(Image.fromarray(crop).resize((out_px, out_px), resample))
        out[index] = crop
    return out


def spot_patches(
    adata: AnnData,
    *,
    size_um: float | None = None,
    size_px: float | None = None,
    out_px: int = DEFAULT_OUT_PX,
    library_id: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Return one patch per spot of ``adata`` and the window parameters, without modifying ``adata``.

    See :func:`omnist.pp.extract_patches` for the parameters and errors.
    """
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

    params = {"size_um": float(size_um), "size_px": float(size_px), "out_px": int(out_px), "library_id": library_id}
    return patches, params


def _pixel_size_or_nan(adata: AnnData, library_id: str) -> float:
    try:
        return microns_per_pixel(adata, library_id)
    except KeyError:
        return float("nan")
