"""Spot embeddings from the shared backbone."""

from __future__ import annotations

import logging

from anndata import AnnData

from omnist.model import OmniST
from omnist.tl._translate import translate
from omnist.tl._validate import check_model

logger = logging.getLogger(__name__)

EMBED_INSTRUCTION = "embed each spot"


def embed(
    adata: AnnData,
    *,
    model: OmniST,
    key_added: str = "X_omnist",
    layer: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Write a spot embedding from expression and neighbourhood to ``obsm[key_added]``.

    The embedding is trained by reconstructing genes hidden from a spot's input, so spots with similar
    expression and surroundings lie close. Use it with ``sc.pp.neighbors(adata, use_rep="X_omnist")``.

    Parameters
    ----------
    adata
        Spots with counts in ``X`` and coordinates in ``obsm["spatial"]``.
    model
        A model trained with the ``embed`` task (every model trained on expression input is).
    key_added
        ``obsm`` key of the embedding; the parameters go to ``uns[key_added]["params"]``.
    layer, batch_size, progress, copy
        As in :func:`omnist.tl.translate`.
    """
    check_model(model)
    if "embed" not in {task.name for task in model.tasks}:
        raise ValueError("The model was not trained on the embed task: train it on sections with expression input.")
    return translate(
        adata,
        EMBED_INSTRUCTION,
        model=model,
        key_added=key_added,
        layer=layer,
        batch_size=batch_size,
        progress=progress,
        copy=copy,
    )
