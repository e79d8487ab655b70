"""Per-section model inputs read from AnnData: patches, colour statistics, hand-made features, targets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from anndata import AnnData

from omnist.data.expression import log1p_cp10k
from omnist.data.features import image_features
from omnist.data.patches import spot_patches
from omnist.data.vocabulary import GeneVocabulary

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
    size. Otherwise they are cut from the image in memory, and ``adata`` is not modified.
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
    patches, params = spot_patches(adata, size_um=patch_um, out_px=patch_px, progress=progress)
    return patches, params["size_um"]


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


def expression_inputs(adata: AnnData, vocabulary: GeneVocabulary, layer: str | None = None) -> np.ndarray:
    """Return the expression adapter's input ``(spots, vocabulary)``: log1p(CP10k) standardised within the section.

    Standardising each gene within the section (as ``scanpy.pp.scale`` does) removes differences in
    sequencing depth and gene-wise offsets between sections. Genes the section lacks are NaN.
    """
    positions, present = vocabulary.lookup(adata.var_names, adata.var.get("gene_symbol"))
    values = np.full((adata.n_obs, len(vocabulary)), np.nan, dtype=np.float32)
    if len(present):
        measured = log1p_cp10k(adata, list(present), layer)
        std = measured.std(axis=0)
        values[:, positions] = (measured - measured.mean(axis=0)) / np.where(std > 1e-6, std, 1.0)
    return values


@dataclass
class SpotInputs:
    """The model inputs of one or more sections, row-aligned: image, expression and neighbours."""

    n: int
    images: ImageInputs | None = None
    expression: np.ndarray | None = None
    neighbours: np.ndarray | None = None
    offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return self.n

    def has(self, modality: str) -> bool:
        """Return whether the inputs of ``modality`` are present."""
        if modality == "image":
            return self.images is not None
        if modality == "expression":
            return self.expression is not None
        if modality == "graph":
            return self.expression is not None and self.neighbours is not None
        return False

    @classmethod
    def concat(cls, parts: list[SpotInputs]) -> SpotInputs:
        """Stack sections; neighbour indices are shifted so that they stay within their section."""
        out = cls(n=sum(part.n for part in parts))
        if all(part.images is not None for part in parts):
            out.images = ImageInputs.concat([part.images for part in parts])
        if all(part.expression is not None for part in parts):
            out.expression = np.concatenate([part.expression for part in parts])
        if all(part.neighbours is not None for part in parts):
            shifted, start = [], 0
            for part in parts:
                shifted.append(np.where(part.neighbours >= 0, part.neighbours + start, -1))
                start += part.n
            out.neighbours = np.concatenate(shifted)
            out.offsets = np.concatenate([part.offsets for part in parts])
        return out
