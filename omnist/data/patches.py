"""Cut square patches centred on spots out of an image and resize them to the model's input size."""

from __future__ import annotations

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from omnist.data.image import ImageSource, to_uint8_rgb

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
