"""Model inputs of one AnnData for the modalities a task reads."""

from __future__ import annotations

import logging

import numpy as np
from anndata import AnnData

from omnist._warnings import warn
from omnist.data.graph import neighbour_offsets, neighbour_table
from omnist.model import OmniST
from omnist.model._inputs import SpotInputs, expression_inputs, image_inputs, section_patches
from omnist.tl._train import _pixel_size

logger = logging.getLogger(__name__)

# Below this fraction of the model's vocabulary measured in a section, expression inputs draw a warning.
MIN_VOCABULARY_COVERAGE = 0.5


def spot_inputs(
    adata: AnnData,
    model: OmniST,
    modalities: tuple[str, ...],
    *,
    patches_key: str = "omnist_patches",
    layer: str | None = None,
    progress: bool = True,
    check_genes: bool = True,
) -> SpotInputs:
    """Return the inputs of ``modalities`` for every spot; ``adata`` is not modified.

    With ``check_genes``, expression inputs are checked with :func:`check_gene_coverage`.
    """
    inputs = SpotInputs(n=adata.n_obs)
    if "image" in modalities:
        patches, _ = section_patches(
            adata, patch_um=model.config.patch_um, patch_px=model.config.patch_px, key=patches_key, progress=progress
        )
        inputs.images = image_inputs(patches, model.config.image_features)
    if "expression" in modalities or "graph" in modalities:
        if check_genes:
            check_gene_coverage(adata, model)
        inputs.expression = expression_inputs(adata, model.vocabulary, layer)
        inputs.neighbours = neighbour_table(adata)
        inputs.offsets = neighbour_offsets(adata, inputs.neighbours, _pixel_size(adata))
    return inputs


def check_gene_coverage(adata: AnnData, model: OmniST) -> None:
    """Raise when ``adata`` measures none of the model's genes; warn when it measures few of them.

    Genes outside the vocabulary are ignored and only logged. Vocabulary genes that ``adata`` lacks count as
    unmeasured, so below :data:`MIN_VOCABULARY_COVERAGE` of the vocabulary the outputs from expression rest
    on little data, and a warning is raised.
    """
    positions, _ = model.vocabulary.lookup(adata.var_names, adata.var.get("gene_symbol"))
    if len(positions) == 0:
        raise KeyError(
            "None of adata.var_names (or var['gene_symbol']) is in the model's gene vocabulary: check that the "
            "genes use the identifiers the model was trained with (model.genes)."
        )
    measured = len(np.unique(positions))
    size = len(model.vocabulary)
    logger.info(
        "%d of %d genes are outside the model's vocabulary and are ignored", adata.n_vars - len(positions), adata.n_vars
    )
    if measured < MIN_VOCABULARY_COVERAGE * size:
        warn(
            f"adata measures {measured} of the model's {size} vocabulary genes ({measured / size:.0%}); the others "
            "count as unmeasured, so outputs from expression rest on few genes. Check that var_names or "
            "var['gene_symbol'] use the model's identifiers (model.genes), or train on this gene panel.",
        )
