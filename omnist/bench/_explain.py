"""Benchmark of grounded region explanations: does ``explain`` name each held-out region correctly?"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from omnist.bench._domains import (
    N_TOP_GENES,
    ModelCache,
    check_sections,
    hide_labels,
    hvg_expression,
    logreg_pca,
    scored_mask,
)
from omnist.bench._report import summarise
from omnist.model import OmniSTConfig
from omnist.tl import explain
from omnist.tl._regions import region_key

logger = logging.getLogger(__name__)

EXPLAIN_METHODS = ("omnist", "omnist_probability", "logreg_pca", "majority")


def explain_regions(
    adatas: Mapping[str, AnnData],
    *,
    label_key: str,
    test_sections: Sequence[str],
    ignore_labels: Sequence[str] = (),
    epochs: int = 20,
    seed: int = 0,
    n_genes: int = 1000,
    n_top_genes: int = N_TOP_GENES,
    config: OmniSTConfig | None = None,
    models: ModelCache | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Explain every labelled region of each held-out section and score the named identities.

    For each section in ``test_sections`` a model trained on the other sections (the same one
    :func:`expression_to_domain` uses) runs :func:`omnist.tl.explain` with ``groupby=label_key``. A region
    counts as named correctly when its top identity is its own label. Three references name each region too:

    - ``omnist_probability``: the same model and spot probabilities, ranked by the region's mean probability
      alone (:func:`omnist.tl.rank_regions` with ``prevalence_exponent=0``), which shows what the
      enrichment over the section adds;
    - ``logreg_pca``: the most frequent of the spot labels that PCA + logistic regression predicts in it;
    - ``majority``: the label with the most training spots, for every region.

    Metrics per section: ``identity_accuracy`` (fraction of regions named correctly) and ``n_regions``.
    Regions labelled with one of ``ignore_labels`` are not explained, and a section without any other
    region gets ``None`` for both metrics and trains no model.

    Returns
    -------
    ``{method: {metric: float, "per_section": {section: {metric: float}}}}``; each metric averages the test
    sections.
    """
    check_sections(adatas, test_sections, label_key)
    models = ModelCache() if models is None else models
    per_section: dict[str, dict] = {method: {} for method in EXPLAIN_METHODS}

    for held_out in test_sections:
        start = time.perf_counter()
        training = [name for name in adatas if name != held_out]
        test = adatas[held_out]
        scored = scored_mask(test.obs[label_key], ignore_labels)
        true = test.obs[label_key].to_numpy(dtype=object)
        regions = list(dict.fromkeys(str(value) for value in true[scored]))
        if not regions:
            logger.warning("explain: %s has no region outside %s, so it is not scored", held_out, list(ignore_labels))
            for method in EXPLAIN_METHODS:
                per_section[method][held_out] = {"identity_accuracy": None, "n_regions": None}
            continue

        train_sections = [hide_labels(adatas[name], label_key, ignore_labels) for name in training]
        train_labels = np.concatenate([adata.obs[label_key].to_numpy(dtype=object) for adata in train_sections])
        keep = scored_mask(train_labels)
        majority = pd.Series(train_labels[keep]).astype(str).value_counts().index[0]
        per_section["majority"][held_out] = _identity_scores({region: majority for region in regions})

        train_values, test_values = hvg_expression(train_sections, test, n_top_genes)
        predicted = logreg_pca(train_values[keep], train_labels[keep], test_values, seed=seed)
        named = {region: pd.Series(predicted[true.astype(str) == region]).value_counts().index[0] for region in regions}
        per_section["logreg_pca"][held_out] = _identity_scores(named)

        model = models.get(
            adatas,
            training,
            label_key=label_key,
            hidden_labels=ignore_labels,
            epochs=epochs,
            seed=seed,
            n_genes=n_genes,
            config=config,
            progress=progress,
        )
        section = test.copy()
        explain(section, groupby=label_key, groups=regions, model=model, key_added="bench")
        records = {region: section.uns["bench"][region_key(region)] for region in regions}
        identities = {region: record["identity"]["label"].iloc[0] for region, record in records.items()}
        per_section["omnist"][held_out] = _identity_scores(identities)
        # The identity tables carry each label's mean probability, so the probability-only ranking needs no
        # second pass through the model.
        by_probability = {
            region: record["identity"].sort_values("probability", ascending=False, kind="stable")["label"].iloc[0]
            for region, record in records.items()
        }
        per_section["omnist_probability"][held_out] = _identity_scores(by_probability)
        summary = ", ".join(f"{m} {per_section[m][held_out]['identity_accuracy']:.2f}" for m in EXPLAIN_METHODS)
        logger.info("explain held-out %s: %s (%.0f s)", held_out, summary, time.perf_counter() - start)
    return {method: summarise(scores) for method, scores in per_section.items()}


def _identity_scores(named: Mapping[str, str]) -> dict[str, float]:
    correct = [region for region, label in named.items() if str(label) == region]
    return {"identity_accuracy": len(correct) / len(named), "n_regions": float(len(named))}
