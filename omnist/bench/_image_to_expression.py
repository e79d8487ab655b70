"""Leave-one-section-out benchmark of H&E → expression on her2st."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from anndata import AnnData

from omnist.bench._baselines import mean_predictor, ridge_probe
from omnist.bench._metrics import mean_pearson
from omnist.data.expression import log1p_cp10k, shared_top_genes
from omnist.data.features import image_features
from omnist.datasets import her2st, her2st_sections
from omnist.model import OmniSTConfig
from omnist.pp import extract_patches
from omnist.tl import train, translate

logger = logging.getLogger(__name__)

METHODS = ("omnist", "ridge", "mean")
MULTITASK = "omnist_multitask"
INSTRUCTION = "predict expression from H&E"


def load_image_sections(data_dir: str | Path, sections: Sequence[str] | None = None) -> dict[str, AnnData]:
    """Load her2st sections with an H&E image (all of them by default) and cut their patches."""
    table = her2st_sections(data_dir)
    with_image = [name for name in table.index if table.loc[name, "image"] and table.loc[name, "counts"]]
    if sections is None:
        sections = with_image
    unknown = [name for name in sections if name not in with_image]
    if unknown:
        raise ValueError(f"Sections {unknown} have no H&E image or counts; sections with both: {with_image}.")
    if len(sections) < 2:
        raise ValueError(f"Leave-one-section-out needs at least 2 sections, got {list(sections)}.")
    adatas = {}
    for name in sections:
        adata = her2st(name, root=data_dir)
        extract_patches(adata, progress=False)
        adatas[name] = adata
    return adatas


def image_to_expression(
    adatas: dict[str, AnnData],
    *,
    n_genes: int = 250,
    epochs: int = 20,
    seed: int = 0,
    config: OmniSTConfig | None = None,
    multitask: bool = False,
    test_sections: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Run leave-one-section-out image → expression for omnist, the ridge probe and the mean predictor.

    Genes are the ``n_genes`` with the highest mean log1p(CP10k) shared by every section; targets are
    log1p(CP10k); the metric is Pearson r per gene on the held-out section, averaged over genes.

    With ``multitask`` a second omnist model per fold (``omnist_multitask``) also learns every task that
    :func:`omnist.pp.build_instructions` generates from the training sections' cluster annotations and
    cell-type proportions, and is scored on the same image → expression task.

    ``test_sections`` limits the held-out sections (default: every section in turn); each fold still
    trains on all other sections.

    Returns
    -------
    ``{method: {"mean_pearson": float, "per_section": {section: float}}}``; ``mean_pearson`` averages the
    sections.
    """
    genes = shared_top_genes(list(adatas.values()), n_genes)
    features = {name: image_features(adata.obsm["omnist_patches"]) for name, adata in adatas.items()}
    targets = {name: log1p_cp10k(adata, genes) for name, adata in adatas.items()}
    methods = (*METHODS, MULTITASK) if multitask else METHODS
    per_section: dict[str, dict[str, float]] = {method: {} for method in methods}

    for held_out in held_out_sections(adatas, test_sections):
        start = time.perf_counter()
        training = [name for name in adatas if name != held_out]
        train_targets = np.concatenate([targets[name] for name in training])
        measured = targets[held_out]

        predicted = mean_predictor(train_targets, len(measured))
        per_section["mean"][held_out] = mean_pearson(measured, predicted)

        train_features = np.concatenate([features[name] for name in training])
        predicted = ridge_probe(train_features, train_targets, features[held_out])
        per_section["ridge"][held_out] = mean_pearson(measured, predicted)

        model = train(
            [adatas[name] for name in training],
            genes=genes,
            epochs=epochs,
            seed=seed,
            config=config,
            progress=progress,
        )
        result = translate(adatas[held_out], INSTRUCTION, model=model, key_added="bench", copy=True, progress=False)
        per_section["omnist"][held_out] = mean_pearson(measured, result.obsm["bench"][genes].to_numpy())

        if multitask:
            sections = [_with_instructions(adatas[name]) for name in training]
            model = train(sections, genes=genes, epochs=epochs, seed=seed, config=config, progress=progress)
            result = translate(adatas[held_out], INSTRUCTION, model=model, key_added="bench", copy=True, progress=False)
            per_section[MULTITASK][held_out] = mean_pearson(measured, result.obsm["bench"][genes].to_numpy())
        logger.info(
            "held-out %s: %s (%.0f s)",
            held_out,
            ", ".join(f"{method} {per_section[method][held_out]:.3f}" for method in methods),
            time.perf_counter() - start,
        )

    return {
        method: {"mean_pearson": float(np.mean(list(scores.values()))), "per_section": scores}
        for method, scores in per_section.items()
    }


def held_out_sections(adatas: dict[str, AnnData], test_sections: Sequence[str] | None) -> list[str]:
    """Return the sections to hold out in turn: ``test_sections``, or every loaded section when it is None."""
    chosen = list(adatas) if test_sections is None else list(test_sections)
    unknown = [name for name in chosen if name not in adatas]
    if unknown:
        raise ValueError(f"Test sections {unknown} are not among the loaded sections {list(adatas)}.")
    return chosen


def _with_instructions(adata: AnnData) -> AnnData:
    """Return a copy of a section with instructions for every task its annotations support."""
    from omnist.pp import build_instructions

    adata = adata.copy()
    label_keys = [key for key in ("cluster_annotation",) if key in adata.obs]
    proportion_keys = [key for key in ("proportions_major",) if key in adata.obsm]
    build_instructions(adata, label_keys=label_keys, proportion_keys=proportion_keys)
    return adata


def format_table(task: str, results: dict[str, dict], metric: str = "mean_pearson") -> str:
    """Return a plain-text table with one row per method and one column per held-out section."""
    sections = list(next(iter(results.values()))["per_section"])
    header = f"{task:<22}{'mean':>8}" + "".join(f"{name:>8}" for name in sections)
    lines = [header, "-" * len(header)]
    for method, record in results.items():
        cells = "".join(f"{record['per_section'][name]:>8.3f}" for name in sections)
        lines.append(f"{method:<22}{record[metric]:>8.3f}{cells}")
    return "\n".join(lines)
