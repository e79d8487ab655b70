"""Run an instruction on an AnnData and write the result into the slot its output modality uses."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from anndata import AnnData

from omnist import __version__
from omnist.model import OmniST
from omnist.model._inputs import image_inputs, section_patches
from omnist.model._omnist import expression_frame
from omnist.tl._validate import check_adata

logger = logging.getLogger(__name__)


def translate(
    adata: AnnData,
    instruction: str,
    *,
    model: OmniST,
    key_added: str | None = None,
    genes: Sequence[str] | None = None,
    patches_key: str = "omnist_patches",
    batch_size: int = 256,
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Carry out an instruction such as ``"predict expression from H&E"`` on every spot.

    The instruction is matched to one of the model's tasks by sentence-embedding similarity, and the
    backbone reads the instruction as written, so paraphrases work.

    Parameters
    ----------
    adata
        Spots with the input modality of the task, e.g. an H&E image in ``uns["spatial"]`` or patches in
        ``obsm[patches_key]``.
    instruction
        What to do, in plain English.
    model
        A trained :class:`~omnist.model.OmniST`.
    key_added
        Where the result goes; defaults to ``"omnist_" + task name``.
    genes
        Genes to predict for expression output; defaults to the genes named in the instruction, else every
        gene of the model's vocabulary.
    patches_key
        ``obsm`` key of precomputed patches.
    batch_size
        Spots per inference batch.
    progress
        Show progress bars.
    copy
        Return a new AnnData and leave ``adata`` untouched.

    Returns
    -------
    ``None``, or the new AnnData when ``copy=True``. Expression output goes to ``obsm[key_added]`` (a
    DataFrame of log1p(CP10k), columns = gene symbols); every call writes ``uns[key_added]["params"]``
    (instruction, task, similarity, model id, omnist version, date).

    Raises
    ------
    ValueError
        If the instruction matches none of the model's tasks (the message lists the closest ones).
    KeyError
        If the input modality the task needs is missing, or a requested gene is not in the vocabulary.

    Examples
    --------
    >>> omnist.tl.translate(adata, "predict expression from H&E", model=model)
    >>> adata.obsm["omnist_image_to_expression"]["ERBB2"]
    """
    start = time.perf_counter()
    check_adata(adata)
    resolved = model.resolve(instruction)
    task = resolved.task
    key = key_added or f"omnist_{task.name}"
    logger.info("instruction %r resolved to task %s (similarity %.2f)", instruction, task.name, resolved.score)

    if task.output != "expression":
        raise ValueError(f"Task {task.name!r} has output {task.output!r}, which translate does not serve yet.")
    chosen = list(genes) if genes is not None else (resolved.genes or model.genes)
    model.vocabulary.index(chosen)
    patches, _ = section_patches(
        adata, patch_um=model.config.patch_um, patch_px=model.config.patch_px, key=patches_key, progress=progress
    )
    inputs = image_inputs(patches, model.config.image_features)
    values = model.predict_expression(inputs, instruction, chosen, batch_size=batch_size, progress=progress)

    adata = adata.copy() if copy else adata
    adata.obsm[key] = expression_frame(values, adata.obs_names, chosen)
    adata.uns[key] = {
        "params": {
            "instruction": instruction,
            "task": task.name,
            "similarity": float(resolved.score),
            "model_id": model.config.model_id,
            "omnist_version": __version__,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    }
    logger.info("finished %s into %r (%.1f s)", task.name, key, time.perf_counter() - start)
    return adata if copy else None
