"""Integrated-gradient attributions of one spot's model output to its H&E pixels and expression values."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from anndata import AnnData

from omnist.data.labels import label_query
from omnist.model import OmniST
from omnist.model._batches import spot_tensors
from omnist.tl._inputs import spot_inputs
from omnist.tl._translate import _candidates
from omnist.tl._validate import check_adata, check_model

logger = logging.getLogger(__name__)

# Inputs whose attributions are computed; graph inputs (the neighbours' expression) stay fixed on the path.
ATTRIBUTED_MODALITIES = ("image", "expression")


@dataclass
class Attribution:
    """Integrated-gradient attributions of one model output at one spot.

    Attributions are in units of the output: the cosine similarity to the target text for text output, or
    the standardised predicted expression of the target gene for expression output. They sum to
    ``score - baseline_score`` up to ``delta``, the integration error.
    """

    task: str
    instruction: str
    spot: str
    target: str
    score: float
    baseline_score: float
    delta: float
    patch: np.ndarray | None = None
    """The uint8 patch ``(H, W, 3)`` the image adapter read, in the orientation of ``image``."""
    image: np.ndarray | None = None
    """Attribution per patch pixel ``(H, W)``, summed over the colour channels."""
    genes: pd.Series | None = None
    """Attribution per measured vocabulary gene (index: gene symbol), largest absolute value first."""


def attribution(
    adata: AnnData,
    *,
    model: OmniST,
    instruction: str,
    spot: int | str,
    target: str | None = None,
    labels: Sequence[str] | None = None,
    n_steps: int = 32,
    patches_key: str = "omnist_patches",
    layer: str | None = None,
    progress: bool = False,
) -> Attribution:
    """Attribute one spot's output for an instruction to its image pixels and expression values.

    Integrated gradients (Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks",
    arXiv:1703.01365) average the gradient of the output along the straight path from a baseline to the
    spot's input, at ``n_steps`` Gauss-Legendre nodes, and multiply it by the input minus the baseline. The
    baseline is the section's mean: zero in the standardised colour space of the patches and in the
    standardised expression values. The hand-made image features and the neighbours' expression stay at the
    spot's values along the path. The patch is read without test-time rotations, so ``score`` can differ
    slightly from what :func:`omnist.tl.translate` reports.

    Parameters
    ----------
    adata
        The section the spot belongs to; colours and expression are standardised over all its spots.
    model
        A trained :class:`~omnist.model.OmniST`.
    instruction
        The instruction whose output is explained, resolved to a task as by :func:`omnist.tl.translate`.
    spot
        Position (int) or name (str) of the spot in ``adata``.
    target
        For text output, the candidate label to explain (default: the spot's top label; for ``text_to_region``
        the query). For expression output, the gene symbol (default: the first gene named in the instruction,
        else the gene with the highest predicted value at the spot).
    labels
        Candidate labels for text output, as in :func:`omnist.tl.translate`.
    n_steps
        Integration steps along the path.
    patches_key
        ``obsm`` key of precomputed patches.
    layer
        Layer with raw counts instead of ``X``.
    progress
        Show progress bars while patches are cut.

    Returns
    -------
    An :class:`Attribution`; ``patch`` and ``image`` are set for tasks that read the image, ``genes`` for tasks
    that read expression. ``adata`` is not modified.

    Raises
    ------
    ValueError
        If the task writes embeddings (no scalar output to explain), or ``n_steps`` < 1.
    KeyError
        If the spot, the target label or the target gene is unknown, or the task's input is missing.
    """
    check_adata(adata)
    check_model(model)
    if n_steps < 1:
        raise ValueError(f"n_steps={n_steps} must be at least 1.")
    index = _spot_index(adata, spot)
    resolved = model.resolve(instruction)
    task = resolved.task
    if task.output not in ("text", "expression"):
        raise ValueError(
            f"Task {task.name!r} writes {task.output} output, which has no scalar to attribute: use a label, "
            "retrieval or expression instruction."
        )
    attributed = [modality for modality in task.inputs if modality in ATTRIBUTED_MODALITIES]
    inputs = spot_inputs(adata, model, task.inputs, patches_key=patches_key, layer=layer, progress=progress)
    tensors = spot_tensors(inputs, task.inputs, np.array([index]), model.device)
    tokens, padding = model._instruction_tokens(instruction)
    backbone = model.backbone.eval()

    def encode(batch: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor:
        return backbone.encode(tokens, padding, batch, task.output)

    if task.output == "expression":
        target, output = _expression_output(model, encode, tensors, resolved.genes, target)
    else:
        target, output = _text_output(model, encode, tensors, task.name, instruction, resolved.query, labels, target)

    sources = {modality: _source(tensors, modality) for modality in attributed}
    baselines = {modality: torch.where(torch.isfinite(value), 0.0, value) for modality, value in sources.items()}
    with torch.no_grad():
        score = float(output(tensors)[0])
        baseline_score = float(output(_replace(tensors, baselines))[0])
    gradients = _path_gradients(output, tensors, sources, baselines, n_steps, model.device)
    attributions = {
        modality: (torch.nan_to_num(sources[modality] - baselines[modality]) * gradients[modality])[0]
        for modality in attributed
    }
    total = sum(float(value.sum()) for value in attributions.values())

    result = Attribution(
        task=task.name,
        instruction=instruction,
        spot=str(adata.obs_names[index]),
        target=target,
        score=score,
        baseline_score=baseline_score,
        delta=total - (score - baseline_score),
    )
    if "image" in attributions:
        result.patch = np.asarray(inputs.images.patches[index])
        result.image = attributions["image"].sum(dim=0).cpu().numpy().astype(np.float64)
    if "expression" in attributions:
        measured = np.isfinite(inputs.expression[index])
        values = attributions["expression"].cpu().numpy().astype(np.float64)[measured]
        symbols = np.asarray(model.vocabulary.symbols, dtype=object)[measured]
        series = pd.Series(values, index=pd.Index(symbols, dtype=str), name="attribution")
        result.genes = series.iloc[np.argsort(-np.abs(series.to_numpy()), kind="stable")]
    logger.info(
        "attributed %s %r at spot %s: score %.3f, baseline %.3f, integration error %.2g",
        task.name,
        target,
        result.spot,
        score,
        baseline_score,
        result.delta,
    )
    return result


def _spot_index(adata: AnnData, spot: int | str) -> int:
    if isinstance(spot, str):
        if spot not in adata.obs_names:
            raise KeyError(f"Spot {spot!r} is not in adata.obs_names, e.g. {list(adata.obs_names[:3])}.")
        return int(adata.obs_names.get_loc(spot))
    if isinstance(spot, bool) or not isinstance(spot, numbers.Integral):
        raise ValueError(f"Invalid spot={spot!r}: pass an obs name (str) or an integer position.")
    index = int(spot)
    if not -adata.n_obs <= index < adata.n_obs:
        raise KeyError(f"Spot position {spot} is out of range for {adata.n_obs} spots.")
    return index % adata.n_obs


def _expression_output(model, encode, tensors, named_genes, target):
    """Return the target gene and a function from input tensors to its predicted (standardised) value."""
    if target is None:
        if named_genes:
            target = named_genes[0]
        else:
            with torch.no_grad():
                predicted = model.backbone.decode_expression(encode(tensors))[0]
            target = model.genes[int(predicted.argmax())]
    gene_index = torch.from_numpy(model.vocabulary.index([target])).to(model.device)

    def output(batch):
        return model.backbone.decode_expression(encode(batch), gene_index)[:, 0]

    return target, output


def _text_output(model, encode, tensors, task_name, instruction, query, labels, target):
    """Return the target label and a function from input tensors to its cosine similarity."""
    if task_name == "text_to_region":
        # The query is scored as translate scores it: the description of the label, without the label.
        label = target or query or instruction
        texts = {label: label_query(label)}
    else:
        values, candidate_texts = _candidates(model, instruction, labels, task_name)
        texts = dict(zip(values, candidate_texts, strict=True))
        if target is not None and target not in texts:
            raise KeyError(f"Target label {target!r} is not a candidate; candidates: {values}.")
    names = list(texts)
    candidates = model.text.sentences(list(texts.values())).to(model.device)

    def similarities(batch):
        return model.backbone.text_decoder.embed(encode(batch)) @ candidates.T

    if task_name != "text_to_region" and target is None:
        with torch.no_grad():
            target = names[int(similarities(tensors)[0].argmax())]
    column = names.index(target) if task_name != "text_to_region" else 0

    def output(batch):
        return similarities(batch)[:, column]

    return names[column], output


def _source(tensors: dict, modality: str) -> torch.Tensor:
    return tensors[modality]["patches" if modality == "image" else "values"]


def _replace(tensors: dict, values: dict[str, torch.Tensor]) -> dict:
    """Return a copy of the adapter inputs with the attributed tensors replaced, other tensors repeated."""
    n = next(iter(values.values())).shape[0] if values else 1
    out = {}
    for modality, parts in tensors.items():
        out[modality] = {name: tensor.expand(n, *tensor.shape[1:]) for name, tensor in parts.items()}
        if modality in values:
            out[modality]["patches" if modality == "image" else "values"] = values[modality]
    return out


def _path_gradients(output, tensors, sources, baselines, n_steps, device) -> dict[str, torch.Tensor]:
    """Return the weighted mean gradient of ``output`` along the path from baseline to input.

    The path is sampled at ``n_steps`` Gauss-Legendre nodes, one of the two rules captum offers. The nodes
    crowd towards both ends of the path, where normalisation layers make the output change fastest.
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    alphas = torch.as_tensor((nodes + 1.0) / 2.0, dtype=torch.float32, device=device)
    weights = torch.as_tensor(weights / 2.0, dtype=torch.float32, device=device)
    path = {}
    for modality, source in sources.items():
        shape = (n_steps,) + (1,) * (source.dim() - 1)
        # Unmeasured genes stay NaN along the path, so the adapter keeps ignoring them.
        point = baselines[modality] + alphas.view(shape) * (source - baselines[modality])
        path[modality] = point.detach().requires_grad_(True)
    with torch.enable_grad():
        values = output(_replace(tensors, path))
        gradients = torch.autograd.grad((values * weights).sum(), list(path.values()))
    return {
        modality: torch.nan_to_num(gradient).sum(dim=0, keepdim=True)
        for modality, gradient in zip(path, gradients, strict=True)
    }
