"""Per-section model inputs read from AnnData: patches, colour statistics, hand-made features, targets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from anndata import AnnData

from omnist.data.expression import log1p_cp10k
from omnist.data.features import image_features
from omnist.data.vocabulary import GeneVocabulary
from omnist.pp._patches import extract_patches

logger = logging.getLogger(__name__)


@dataclass
class ImageInputs:
    """Patches of one or more sections with per-section colour statistics and standardised features."""

    patches: np.ndarray
    colour_mean: np.ndarray
    colour_std: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.patches)

    @classmethod
    def concat(cls, parts: list[ImageInputs]) -> ImageInputs:
        """Stack the inputs of several sections."""
        return cls(
            *(
                np.concatenate([getattr(part, name) for part in parts])
                for name in ("patches", "colour_mean", "colour_std", "features")
            )
        )


def section_patches(
    adata: AnnData, *, patch_um: float | None, patch_px: int, key: str = "omnist_patches", progress: bool = True
) -> tuple[np.ndarray, float]:
    """Return the patches of a section at the model's window and size, and the window in µm.

    Patches already in ``obsm[key]`` are used when ``uns["omnist"]["patches"]`` shows the same window and
    size; otherwise they are cut from the image in memory, and ``adata`` is not modified.
    """
    stored = adata.uns.get("omnist", {}).get("patches", {})
    if key in adata.obsm and stored.get("key", key) == key and stored.get("out_px") == patch_px:
        stored_um = stored.get("size_um")
        if patch_um is None or (stored_um is not None and abs(stored_um - patch_um) <= 0.01 * patch_um):
            return np.asarray(adata.obsm[key]), float(stored_um)
    if "spatial" not in adata.uns:
        raise KeyError(
            f"The instruction needs H&E patches, but adata has neither obsm[{key!r}] nor an image in "
            "uns['spatial']. Load a section with an image, or run omnist.pp.extract_patches."
        )
    view = AnnData(
        obs=adata.obs[[]],
        obsm={"spatial": adata.obsm["spatial"]} if "spatial" in adata.obsm else {},
        uns={"spatial": adata.uns["spatial"]},
    )
    extract_patches(view, size_um=patch_um, out_px=patch_px, key_added=key, progress=progress)
    return view.obsm[key], view.uns["omnist"]["patches"]["size_um"]


def image_inputs(patches: np.ndarray, with_features: bool) -> ImageInputs:
    """Compute the colour statistics and standardised hand-made features of one section's patches.

    Colour and features are standardised within the section so that the model sees stain differences
    between spots of a section, not between laboratories or scanners.
    """
    pixels = patches.reshape(-1, 3).astype(np.float32) / 255.0
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0) + 1e-3
    n = len(patches)
    if with_features:
        raw = image_features(patches)
        scale = raw.std(axis=0)
        features = (raw - raw.mean(axis=0)) / np.where(scale > 1e-6, scale, 1.0)
    else:
        features = np.zeros((n, 0), dtype=np.float32)
    return ImageInputs(
        patches=patches,
        colour_mean=np.repeat(mean[None], n, axis=0),
        colour_std=np.repeat(std[None], n, axis=0),
        features=features.astype(np.float32),
    )


def expression_targets(adata: AnnData, vocabulary: GeneVocabulary, layer: str | None = None) -> np.ndarray:
    """Return standardised log1p(CP10k) targets over the whole vocabulary, NaN for genes the section lacks."""
    present = [gene for gene in vocabulary.symbols if gene in adata.var_names]
    targets = np.full((adata.n_obs, len(vocabulary)), np.nan, dtype=np.float32)
    if present:
        positions = vocabulary.index(present)
        targets[:, positions] = vocabulary.standardise(log1p_cp10k(adata, present, layer), positions)
    return targets
