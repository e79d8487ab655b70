"""Hand-made image features per patch: colour and H&E stain statistics, intensity histogram, thumbnail."""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2hed
from skimage.transform import resize

_PERCENTILES = (10, 50, 90)
_HISTOGRAM_BINS = 16
_THUMBNAIL_PX = 4


def feature_names() -> list[str]:
    """Return the names of the columns :func:`image_features` returns."""
    names = [f"rgb_{channel}_{stat}" for channel in "rgb" for stat in ("mean", "std")]
    names += [f"hed_{channel}_{stat}" for channel in "hed" for stat in ("mean", "std", *map(str, _PERCENTILES))]
    names += [f"grey_hist_{index}" for index in range(_HISTOGRAM_BINS)]
    names += [
        f"thumb_{row}_{col}_{channel}"
        for row in range(_THUMBNAIL_PX)
        for col in range(_THUMBNAIL_PX)
        for channel in "rgb"
    ]
    return names


def image_features(patches: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Return hand-made features ``(N, F)`` for uint8 RGB patches ``(N, H, W, 3)``.

    Colour deconvolution into haematoxylin, eosin and DAB uses ``skimage.color.rgb2hed``.
    """
    rows = []
    for start in range(0, len(patches), batch_size):
        batch = patches[start : start + batch_size].astype(np.float32) / 255.0
        n = batch.shape[0]
        pixels = batch.reshape(n, -1, 3)
        rgb = np.concatenate([pixels.mean(axis=1), pixels.std(axis=1)], axis=1)
        rgb = rgb.reshape(n, 2, 3).transpose(0, 2, 1).reshape(n, 6)

        hed = rgb2hed(batch.reshape(-1, batch.shape[2], 3)).reshape(n, -1, 3)
        hed_stats = [hed.mean(axis=1), hed.std(axis=1), *np.percentile(hed, _PERCENTILES, axis=1)]
        hed_block = np.stack(hed_stats, axis=2).reshape(n, -1)

        grey = pixels.mean(axis=2)
        histogram = (
            np.stack([np.histogram(row, bins=_HISTOGRAM_BINS, range=(0.0, 1.0))[0] for row in grey]).astype(np.float32)
            / grey.shape[1]
        )

        thumbnail = resize(batch, (n, _THUMBNAIL_PX, _THUMBNAIL_PX, 3), anti_aliasing=True).reshape(n, -1)
        rows.append(np.concatenate([rgb, hed_block, histogram, thumbnail], axis=1).astype(np.float32))
    return np.concatenate(rows) if rows else np.zeros((0, len(feature_names())), dtype=np.float32)
