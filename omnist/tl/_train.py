"""Train an OmniST model on one or more sections."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from anndata import AnnData

from omnist import tasks as task_registry
from omnist.data.expression import log1p_cp10k, shared_top_genes
from omnist.data.vocabulary import GeneVocabulary
from omnist.model import OmniST, OmniSTConfig
from omnist.model._batches import ExpressionTaskData
from omnist.model._inputs import ImageInputs, expression_targets, image_inputs, section_patches
from omnist.tl._validate import check_adata

logger = logging.getLogger(__name__)

DEFAULT_N_GENES = 1000


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
    progress: bool = True,
) -> OmniST:
    """Train one OmniST model on every task the sections support.

    Parameters
    ----------
    adatas
        One section or a list of sections with raw counts in ``X`` (or ``layer``) and an H&E image in
        ``uns["spatial"]`` or patches in ``obsm[patches_key]``. Sections may measure different genes.
    tasks
        Task names to train; by default every registered task whose inputs and targets the sections hold.
    genes
        Genes of the expression vocabulary; by default the ``n_genes`` genes present in every section with
        the highest mean log1p(CP10k).
    n_genes
        Vocabulary size when ``genes`` is None.
    epochs
        Passes over all spots of all tasks.
    batch_size
        Spots per optimisation step.
    lr
        Peak learning rate of AdamW.
    seed
        Seed of weight initialisation, batch order and augmentation; equal seeds give equal models on the
        same device.
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, …
    config
        Model sizes; defaults to :class:`~omnist.model.OmniSTConfig`.
    layer
        Layer with raw counts instead of ``X``.
    patches_key
        ``obsm`` key of patches from :func:`omnist.pp.extract_patches`; missing patches are cut in memory.
    progress
        Show progress bars.

    Returns
    -------
    The trained :class:`~omnist.model.OmniST`. The input AnnData objects are not modified.

    Examples
    --------
    >>> sections = [omnist.datasets.her2st(name) for name in ("C2", "C3", "C4", "C5")]
    >>> model = omnist.tl.train(sections, epochs=30, seed=0)
    """
    start = time.perf_counter()
    adatas = [adatas] if isinstance(adatas, AnnData) else list(adatas)
    if not adatas:
        raise ValueError("adatas is empty: pass at least one section.")
    for index, adata in enumerate(adatas):
        check_adata(adata, f"adatas[{index}]")
    task_specs = _choose_tasks(adatas, tasks, patches_key)
    logger.info("training on %d sections, tasks %s", len(adatas), [spec.name for spec in task_specs])

    if genes is None:
        genes = shared_top_genes(adatas, n_genes)
    else:
        genes = list(dict.fromkeys(genes))
        missing = [gene for gene in genes if not any(gene in adata.var_names for adata in adatas)]
        if missing:
            raise KeyError(f"{len(missing)} genes are in no section's var_names, e.g. {missing[:5]}.")
    vocabulary = _fit_vocabulary(adatas, genes, layer)

    config = OmniSTConfig() if config is None else OmniSTConfig.from_dict(config.to_dict())
    torch.manual_seed(seed)
    images = []
    for adata in adatas:
        patches, patch_um = section_patches(
            adata, patch_um=config.patch_um, patch_px=config.patch_px, key=patches_key, progress=progress
        )
        config.patch_um = patch_um if config.patch_um is None else config.patch_um
        images.append(image_inputs(patches, config.image_features))
    model = OmniST(config, vocabulary, task_specs, device=device)

    data = []
    for spec in task_specs:
        targets = np.concatenate([expression_targets(adata, vocabulary, layer) for adata in adatas])
        data.append(ExpressionTaskData(spec, list(spec.templates), ImageInputs.concat(images), targets))
    model.fit(data, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    logger.info("finished training model %s (%.1f s)", config.model_id, time.perf_counter() - start)
    return model


def _choose_tasks(adatas: list[AnnData], names: Sequence[str] | None, patches_key: str):
    has_image = all(patches_key in adata.obsm or adata.uns.get("spatial") for adata in adatas)
    if names is None:
        if not has_image:
            raise ValueError(
                "No task can be trained: image_to_expression needs an H&E image in uns['spatial'] or "
                f"patches in obsm[{patches_key!r}] for every section."
            )
        names = ["image_to_expression"]
    specs = [task_registry.get(name) for name in names]
    for spec in specs:
        if spec.output != "expression" or tuple(spec.inputs) != ("image",):
            raise ValueError(f"Task {spec.name!r} ({spec.inputs} → {spec.output}) cannot be trained yet.")
    return specs


def _fit_vocabulary(adatas: list[AnnData], genes: list[str], layer: str | None) -> GeneVocabulary:
    blocks = []
    for adata in adatas:
        block = np.full((adata.n_obs, len(genes)), np.nan, dtype=np.float32)
        present = [index for index, gene in enumerate(genes) if gene in adata.var_names]
        block[:, present] = log1p_cp10k(adata, [genes[index] for index in present], layer)
        blocks.append(block)
    return GeneVocabulary.fit(genes, np.concatenate(blocks))
