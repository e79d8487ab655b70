"""Model inputs of one AnnData for the modalities a task reads."""

from __future__ import annotations

from anndata import AnnData

from omnist._warnings import warn
from omnist.data.graph import neighbour_offsets, neighbour_table
from omnist.model import OmniST
from omnist.model._inputs import SpotInputs, expression_inputs, image_inputs, section_patches
from omnist.tl._train import _pixel_size


def spot_inputs(
    adata: AnnData,
    model: OmniST,
    modalities: tuple[str, ...],
    *,
    patches_key: str = "omnist_patches",
    layer: str | None = None,
    progress: bool = True,
) -> SpotInputs:
    """Return the inputs of ``modalities`` for every spot; ``adata`` is not modified."""
    inputs = SpotInputs(n=adata.n_obs)
    if "image" in modalities:
        patches, _ = section_patches(
            adata, patch_um=model.config.patch_um, patch_px=model.config.patch_px, key=patches_key, progress=progress
        )
        inputs.images = image_inputs(patches, model.config.image_features)
    if "expression" in modalities or "graph" in modalities:
        positions, _ = model.vocabulary.lookup(adata.var_names, adata.var.get("gene_symbol"))
        if len(positions) == 0:
            raise KeyError(
                "None of adata.var_names (or var['gene_symbol']) is in the model's gene vocabulary: check that the "
                "genes use the identifiers the model was trained with (model.genes)."
            )
        unknown = adata.n_vars - len(positions)
        if unknown:
            warn(
                f"{unknown} of {adata.n_vars} genes are not in the model's vocabulary of {len(model.vocabulary)} genes "
                "and are ignored.",
            )
        inputs.expression = expression_inputs(adata, model.vocabulary, layer)
        inputs.neighbours = neighbour_table(adata)
        inputs.offsets = neighbour_offsets(adata, inputs.neighbours, _pixel_size(adata))
    return inputs
