"""Read H&E images at the resolution a task needs, without decoding more than necessary."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# Whole-slide H&E images exceed PIL's decompression-bomb guard; the files come from the user.
Image.MAX_IMAGE_PIXELS = None

_TIFF_SUFFIXES = {".tif", ".tiff", ".svs", ".btf"}


@dataclass
class ImageSource:
    """An RGB image addressed in full-resolution pixel coordinates.

    The pixels come from a file (read lazily, tile by tile for tiled TIFF, at a reduced JPEG decoding
    scale otherwise) or from an in-memory or dask array. ``scale`` maps full-resolution pixels to the
    array's pixels, so a hires image with ``tissue_hires_scalef`` can stand in for a missing full-resolution
    file.
    """

    path: Path | None = None
    array: object | None = None
    scale: float = 1.0
    _cache: dict[float, tuple[np.ndarray, float]] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """Height and width of the image in full-resolution pixels."""
        if self.array is not None:
            height, width = self.array.shape[:2]
            return round(height / self.scale), round(width / self.scale)
        if self.path.suffix.lower() in _TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(self.path) as tif:
                page_shape = tif.series[0].levels[0].shape
            height, width = _height_width(page_shape)
            return round(height / self.scale), round(width / self.scale)
        with Image.open(self.path) as image:
            width, height = image.size
        return round(height / self.scale), round(width / self.scale)

    def pixels(self, downscale: float = 1.0) -> tuple[object, float]:
        """Return an array of the image at about ``1 / downscale`` of full resolution, and its exact scale.

        The returned scale maps full-resolution pixel coordinates to the returned array's pixels. JPEG files
        are decoded at 1/2, 1/4 or 1/8 scale when that still gives at least the requested resolution, so a
        9,000 px H&E needs a quarter or less of the memory a full decode takes. Tiled TIFF files return a
        lazy zarr array that reads only the tiles a slice touches.
        """
        if self.array is not None:
            return self.array, self.scale
        if self.path.suffix.lower() in _TIFF_SUFFIXES:
            return _open_tiff_lazily(self.path), self.scale

        reduce = 1
        while reduce * 2 <= downscale * self.scale and reduce < 8:
            reduce *= 2
        if reduce in self._cache:
            return self._cache[reduce]

        with Image.open(self.path) as image:
            full_width, full_height = image.size
            if reduce > 1 and image.format == "JPEG":
                image.draft("RGB", (full_width // reduce, full_height // reduce))
            elif reduce > 1:
                image = image.reduce(reduce)
            array = np.asarray(image.convert("RGB"))
        scale = self.scale * array.shape[1] / full_width
        logger.debug("decoded %s at %d x %d px (scale %.3f)", self.path, array.shape[1], array.shape[0], scale)
        self._cache.clear()
        self._cache[reduce] = (array, scale)
        return array, scale

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        """Return the image downscaled so its longer side is at most ``max_side`` px, and its scale."""
        height, width = self.shape
        downscale = max(height, width) / max_side
        array, scale = self.pixels(downscale)
        image = Image.fromarray(np.asarray(array[:, :, :3]).astype(np.uint8))
        factor = max_side / max(image.size)
        if factor < 1:
            new_size = (max(1, round(image.size[0] * factor)), max(1, round(image.size[1] * factor)))
            image = image.resize(new_size, Image.Resampling.LANCZOS)
            scale *= factor
        return np.asarray(image), scale


def _height_width(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 3 and shape[0] in (3, 4) and shape[-1] not in (3, 4):
        return shape[1], shape[2]
    return shape[0], shape[1]


def _open_tiff_lazily(path: Path):
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, level=0)
    return zarr.open(store, mode="r")


def to_uint8_rgb(array: np.ndarray) -> np.ndarray:
    """Convert an image array (H×W, H×W×C with C in 1, 3, 4, float in [0, 1] or any integer) to uint8 RGB."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        upper = 1.0 if float(np.nanmax(array)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(array) / upper * 255.0, 0, 255).astype(np.uint8)
    upper = 65535.0 if int(array.max()) > 255 else 255.0
    return np.clip(array.astype(np.float64) / upper * 255.0, 0, 255).astype(np.uint8)
