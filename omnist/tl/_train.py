"""Train an OmniST model on one or more sections over every task their instructions cover."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scanpy as sc
import torch
from anndata import AnnData

from omnist import tasks as task_registry
from omnist.data.expression import log1p_cp10k, shared_top_genes
from omnist.data.graph import neighbour_offsets, neighbour_table
from omnist.data.labels import describe_label
from omnist.data.spatial import get_library_id, microns_per_pixel
from omnist.data.vocabulary import GeneVocabulary
from omnist.model import OmniST, OmniSTConfig
from omnist.model._batches import TaskData
from omnist.model._inputs import (
    SpotInputs,
    expression_inputs,
    expression_targets,
    image_inputs,
    section_patches,
)
from omnist.tl._validate import check_adata

logger = logging.getLogger(__name__)

DEFAULT_N_GENES = 1000
# Exponent of the inverse class frequency that weights the label loss: 0 = unweighted, 1 = fully balanced.
LABEL_BALANCE = 0.5

# Model ids handed out in this process; a config reused for another training gets a fresh id.
_TRAINED_IDS: set[str] = set()


@dataclass
class _Group:
    """Instructions of tasks that share inputs, output and target, trained as one stream of batches."""

    task: task_registry.TaskSpec
    target: str
    instructions: list[str] = field(default_factory=list)
    sections: list[int] = field(default_factory=list)
    members: set[str] = field(default_factory=set)
    examples: list[tuple[str, str]] = field(default_factory=list)


def train(
    adatas: AnnData | Sequence[AnnData],
    *,
    tasks: Sequence[str] | None = None,
    genes: Sequence[str] | None = None,
    n_genes: int = DEFAULT_N_GENES,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "auto",
    config: OmniSTConfig | None = None,
    layer: str | None = None,
    patches_key: str = "omnist_patches",
    instructions_key: str = "omnist",
    progress: bool = True,
) -> OmniST:
    """Train one OmniST model over several sections on every task their instructions cover.

    The tasks come from ``uns[instructions_key]["instructions"]`` of each section, written by
    :func:`omnist.pp.build_instructions`. A section without that table trains ``image_to_expression`` when it
    has an H&E image, and ``embed`` otherwise.

    Parameters
    ----------
    adatas
        One section or a list of sections with raw counts in ``X`` (or ``layer``). Sections may measure
        different genes and come from different data sets.
    tasks
        Train only these task names.
    genes
        Genes of the vocabulary; by default up to ``n_genes`` genes: the most highly expressed genes shared
        by all sections when an image task is trained, then highly variable genes.
    n_genes
        Vocabulary size when ``genes`` is None.
    epochs
        Passes over all training spots of all tasks.
    batch_size
        Spots per optimisation step.
    lr
        Peak learning rate of AdamW.
    seed
        Seed of weight initialisation, batch order, masking and augmentation; equal seeds give equal models
        on the same device.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, …
    config
        Model sizes; defaults to :class:`~omnist.model.OmniSTConfig`.
    layer
        Layer with raw counts instead of ``X``.
    patches_key
        ``obsm`` key of patches from :func:`omnist.pp.extract_patches`; missing patches are cut in memory.
    instructions_key
        ``uns`` key that holds the instruction table.
    progress
        Show progress bars.

    Returns
    -------
    The trained :class:`~omnist.model.OmniST`. The input AnnData objects are not modified.

    Examples
    --------
    >>> for adata in sections:
    ...     omnist.pp.build_instructions(adata, label_keys=["layer"])
    >>> model = omnist.tl.train(sections, epochs=20, seed=0)
    """
    start = time.perf_counter()
    adatas = [adatas] if isinstance(adatas, AnnData) else list(adatas)
    if not adatas:
        raise ValueError("adatas is empty: pass at least one section.")
    for index, adata in enumerate(adatas):
        check_adata(adata, f"adatas[{index}]")
    groups = _collect_groups(adatas, tasks, patches_key, instructions_key)
    logger.info("training on %d sections, tasks %s", len(adatas), sorted({n for g in groups for n in g.members}))

    reads_image = [group for group in groups if "image" in group.task.inputs or group.target == "image"]
    needs_image = bool(reads_image)
    needs_expression = any({"expression", "graph"} & set(group.task.inputs) for group in groups)
    image_sections = [adatas[i] for group in reads_image for i in group.sections]
    vocabulary = _fit_vocabulary(adatas, _choose_genes(adatas, genes, n_genes, image_sections or None), layer)

    config = OmniSTConfig() if config is None else OmniSTConfig.from_dict(config.to_dict())
    if config.model_id == "" or any(config.model_id == other for other in _TRAINED_IDS):
        config.model_id = uuid.uuid4().hex[:12]
    _TRAINED_IDS.add(config.model_id)
    torch.manual_seed(seed)
    image_rows = {i for group in reads_image for i in group.sections}
    parts = []
    for index, adata in enumerate(adatas):
        part = SpotInputs(n=adata.n_obs)
        if index in image_rows:
            patches, patch_um = section_patches(
                adata, patch_um=config.patch_um, patch_px=config.patch_px, key=patches_key, progress=progress
            )
            config.patch_um = patch_um if config.patch_um is None else config.patch_um
            part.images = image_inputs(patches, config.image_features)
        if needs_expression:
            part.expression = expression_inputs(adata, vocabulary, layer)
            part.neighbours = neighbour_table(adata)
            part.offsets = neighbour_offsets(adata, part.neighbours, _pixel_size(adata))
        parts.append(part)
    if needs_image and len(image_rows) < len(adatas):
        # Sections without images still need placeholder image inputs so that rows stay aligned.
        parts = _fill_missing_images(parts, config)
    inputs = SpotInputs.concat(parts)
    offsets = np.cumsum([0] + [adata.n_obs for adata in adatas])

    trained = sorted({name for group in groups for name in group.members})
    model = OmniST(config, vocabulary, [task_registry.get(name) for name in trained], device=device)
    for group in groups:
        for row_task, row_instruction in group.examples:
            known = model.instructions.setdefault(row_task, [])
            if row_instruction not in known:
                known.append(row_instruction)
    data = [_task_data(group, adatas, inputs, offsets, vocabulary, model, layer, instructions_key) for group in groups]
    data = [item for item in data if len(item)]
    if not data:
        raise ValueError("No training spots: every target is missing or NaN in the sections.")
    model.fit(data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    logger.info("finished training model %s (%.1f s)", config.model_id, time.perf_counter() - start)
    return model


def _collect_groups(adatas, names, patches_key, instructions_key) -> list[_Group]:
    groups: dict[tuple, _Group] = {}
    for index, adata in enumerate(adatas):
        table = adata.uns.get(instructions_key, {}).get("instructions")
        if table is None:
            has_image = patches_key in adata.obsm or any(
                library.get("images") for library in adata.uns.get("spatial", {}).values()
            )
            default = "image_to_expression" if has_image else "embed"
            spec = task_registry.get(default)
            table = pd.DataFrame({"task": default, "instruction": list(spec.templates), "target": spec.target})
        for row in table.itertuples(index=False):
            if names is not None and row.task not in names:
                continue
            spec = task_registry.get(row.task)
            target = row.target.split("=", 1)[0]
            key = (spec.inputs, spec.output, target)
            group = groups.setdefault(key, _Group(task=spec, target=target))
            group.members.add(spec.name)
            group.examples.append((spec.name, row.instruction))
            if row.instruction not in group.instructions:
                group.instructions.append(row.instruction)
            if index not in group.sections:
                group.sections.append(index)
    if not groups:
        raise ValueError(
            f"No task to train: none of {list(names) if names else 'the instructions'} matches what the sections "
            "hold. Run omnist.pp.build_instructions on each section first."
        )
    return list(groups.values())


def _choose_genes(adatas, genes, n_genes, image_sections) -> list[str]:
    if genes is not None:
        genes = list(dict.fromkeys(genes))
        missing = [gene for gene in genes if not any(gene in adata.var_names for adata in adatas)]
        if missing:
            raise KeyError(f"{len(missing)} genes are in no section's var_names, e.g. {missing[:5]}.")
        return genes
    chosen: list[str] = []
    if image_sections:
        chosen = shared_top_genes(image_sections, n_genes)
    if len(chosen) < n_genes:
        chosen += [gene for gene in _highly_variable(adatas, n_genes) if gene not in set(chosen)]
    return chosen[:n_genes]


def _highly_variable(adatas: list[AnnData], n_genes: int) -> list[str]:
    """Return up to ``n_genes`` highly variable genes, ranked within each section and merged by mean rank."""
    ranks: dict[str, list[float]] = {}
    for adata in adatas:
        view = AnnData(X=log1p_cp10k(adata), var=pd.DataFrame(index=adata.var_names))
        table = sc.pp.highly_variable_genes(view, n_top_genes=min(n_genes, adata.n_vars), inplace=False)
        order = table["dispersions_norm"].fillna(-np.inf).rank(ascending=False)
        for gene, rank in zip(adata.var_names, order, strict=True):
            ranks.setdefault(gene, []).append(rank)
    score = {gene: np.mean(values) + 1e6 * (len(adatas) - len(values)) for gene, values in ranks.items()}
    return sorted(score, key=score.get)[:n_genes]


def _fit_vocabulary(adatas: list[AnnData], genes: list[str], layer: str | None) -> GeneVocabulary:
    blocks = []
    for adata in adatas:
        block = np.full((adata.n_obs, len(genes)), np.nan, dtype=np.float32)
        present = [index for index, gene in enumerate(genes) if gene in adata.var_names]
        block[:, present] = log1p_cp10k(adata, [genes[index] for index in present], layer)
        blocks.append(block)
    return GeneVocabulary.fit(genes, np.concatenate(blocks))


def _pixel_size(adata: AnnData) -> float:
    """Return µm per coordinate unit of ``obsm["spatial"]``; 1 when the AnnData gives no pixel size."""
    try:
        return microns_per_pixel(adata, get_library_id(adata))
    except (KeyError, ValueError):
        # NOTE: without scale factors the coordinates are taken to be in µm.
        return 1.0


def _fill_missing_images(parts: list[SpotInputs], config: OmniSTConfig) -> list[SpotInputs]:
    template = next(part.images for part in parts if part.images is not None)
    for part in parts:
        if part.images is None:
            part.images = image_inputs(
                np.full((part.n, config.patch_px, config.patch_px, 3), 255, dtype=np.uint8),
                config.image_features,
            )
            part.images.features = np.zeros((part.n, template.features.shape[1]), dtype=np.float32)
    return parts


def _record_labels(model: OmniST, group: _Group, values: list[str], texts: list[str]) -> None:
    """Record a label set on the model under its target, shared by every task that learns from it."""
    record = model.label_sets.setdefault(group.target, {"tasks": [], "values": [], "texts": []})
    record["tasks"] = sorted({*record["tasks"], *group.members})
    for value, text in zip(values, texts, strict=True):
        if value not in record["values"]:
            record["values"].append(value)
            record["texts"].append(text)


def _text_task_data(group, adatas, inputs, offsets, vocabulary, model, layer, instructions_key, rows) -> TaskData:
    """Return the spots of a task with text input: each labelled spot reads the text of its label."""
    if not group.target.startswith("obs:") or group.task.output != "expression":
        raise ValueError(
            f"Task {group.task.name!r} reads text from target {group.target!r} into output {group.task.output!r}; "
            "text input is trained from an obs label column ('obs:KEY') into expression output."
        )
    key = group.target[4:]
    descriptions = {}
    for i in group.sections:
        descriptions.update(adatas[i].uns.get(instructions_key, {}).get("label_descriptions", {}).get(key, {}))

    labels = np.concatenate([adatas[i].obs[key].astype(object).to_numpy() for i in group.sections])
    keep = ~pd.isna(labels)
    texts = [describe_label(str(value), descriptions) for value in labels[keep]]
    distinct = list(dict.fromkeys(texts))
    position = {text: index for index, text in enumerate(distinct)}
    tokens, padding = model.text.tokens(distinct)
    values = list(dict.fromkeys(str(value) for value in labels[keep]))
    _record_labels(model, group, values, [describe_label(value, descriptions) for value in values])

    targets = np.concatenate([expression_targets(adatas[i], vocabulary, layer) for i in group.sections])
    row_text = np.array([position[text] for text in texts], dtype=np.int64)
    return TaskData(
        group.task,
        group.instructions,
        inputs,
        "expression",
        targets[keep],
        rows[keep],
        [],
        group.target,
        texts=(tokens, padding, row_text),
    )


def label_weights(targets: np.ndarray, n_classes: int) -> np.ndarray | None:
    """Return cross-entropy weights per class, (n / count) ** LABEL_BALANCE, with a mean of 1 over the spots.

    ``cross_entropy`` divides by the summed weights of each batch, so only the ratios between classes
    change the loss; the scale makes the weights readable.
    """
    if LABEL_BALANCE == 0 or len(targets) == 0:
        return None
    counts = np.bincount(targets, minlength=n_classes).astype(np.float64)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = (counts[present].sum() / counts[present]) ** LABEL_BALANCE
    weights /= (weights * counts).sum() / counts.sum()
    return weights.astype(np.float32)


def _task_data(group, adatas, inputs, offsets, vocabulary, model, layer, instructions_key) -> TaskData:
    rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in group.sections])
    kind, targets, candidates, weights = "expression", None, [], None
    if "text" in group.task.inputs:
        return _text_task_data(group, adatas, inputs, offsets, vocabulary, model, layer, instructions_key, rows)
    if group.target == "expression" and group.task.output == "embedding":
        kind, targets = "masked", np.zeros(len(rows), dtype=np.float32)
    elif group.target == "image":
        if group.task.output != "embedding":
            raise ValueError(
                f"Task {group.task.name!r} has target 'image', which is learned through the 'embedding' output, "
                f"but its output is {group.task.output!r}."
            )
        kind, targets = "paired_image", np.zeros(len(rows), dtype=np.float32)
    elif group.target == "expression":
        targets = np.concatenate([expression_targets(adatas[i], vocabulary, layer) for i in group.sections])
    elif group.target.startswith("obs:"):
        key = group.target[4:]
        kind = "labels"
        values = sorted({str(v) for i in group.sections for v in adatas[i].obs[key].dropna().unique()})
        descriptions = {}
        for i in group.sections:
            descriptions.update(adatas[i].uns.get(instructions_key, {}).get("label_descriptions", {}).get(key, {}))
        candidates = [describe_label(value, descriptions) for value in values]
        labels = np.concatenate([adatas[i].obs[key].astype(object).to_numpy() for i in group.sections])
        position = {value: index for index, value in enumerate(values)}
        targets = np.array([position.get(str(v), -1) if not pd.isna(v) else -1 for v in labels])
        keep = targets >= 0
        rows, targets = rows[keep], targets[keep]
        weights = label_weights(targets, len(values))
        _record_labels(model, group, values, candidates)
    elif group.target.startswith("obsm:"):
        key = group.target[5:]
        kind = "proportions"
        frames = [adatas[i].obsm[key] for i in group.sections]
        values = list(frames[0].columns)
        table = np.concatenate([frame.reindex(columns=values).to_numpy(dtype=np.float32) for frame in frames])
        keep = np.isfinite(table).all(axis=1)
        rows, targets = rows[keep], table[keep] / table[keep].sum(axis=1, keepdims=True)
        candidates = [describe_label(value) for value in values]
        _record_labels(model, group, values, candidates)
    else:
        raise ValueError(f"Target {group.target!r} of task {group.task.name!r} is not understood.")
    return TaskData(group.task, group.instructions, inputs, kind, targets, rows, candidates, group.target, weights)
