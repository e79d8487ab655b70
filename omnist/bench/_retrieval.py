"""Text → region retrieval and zero-shot labels on held-out sections.

Retrieval scores every spot for a plain-language query and measures how well the scores rank the spots of
the matching pathologist region (or layer) above the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import scanpy as sc
from anndata import AnnData
from sklearn.metrics import roc_auc_score

from omnist.bench._domains import (
    HER2ST_IGNORED_LABELS,
    ModelCache,
    check_sections,
    label_values,
    scored_mask,
)
from omnist.bench._report import summarise
from omnist.data.expression import log1p_cp10k
from omnist.model import OmniST, OmniSTConfig
from omnist.tl import translate

logger = logging.getLogger(__name__)

RETRIEVAL_METHODS = ("omnist", "marker_score", "random")
ZERO_SHOT_METHODS = ("omnist", "random")
ZERO_SHOT_METRICS = ("retrieval_auroc", "retrieval_precision_at_k", "held_out_recall")

# One plain-language query per her2st pathologist region ("undetermined" is no region and gets none).
REGION_QUERIES = {
    "invasive cancer": "find invasive cancer",
    "cancer in situ": "show me cancer in situ",
    "immune infiltrate": "show me immune infiltrate",
    "breast glands": "highlight breast glands on the tissue",
    "connective tissue": "locate regions of connective tissue",
    "adipose tissue": "where is the adipose tissue",
}

# Hand-picked canonical marker genes of the cell types that dominate each region, typed from textbook
# knowledge rather than taken from a curated database or fitted to these data.
MARKER_GENES = {
    # HER2-positive tumour epithelium: the amplified ERBB2 and luminal epithelial keratins and EPCAM. The same
    # list serves invasive and in situ cancer, because these markers do not separate the two.
    "invasive cancer": ["ERBB2", "KRT8", "KRT18", "EPCAM"],
    "cancer in situ": ["ERBB2", "KRT8", "KRT18", "EPCAM"],
    # Leukocytes (PTPRC), T cells (CD3E), B cells (MS4A1) and plasma cells (IGKC).
    "immune infiltrate": ["PTPRC", "CD3E", "MS4A1", "IGKC"],
    # Basal/myoepithelial cells that line normal ducts and lobules: basal keratins and smooth-muscle actin.
    "breast glands": ["KRT5", "KRT14", "KRT17", "ACTA2"],
    # Fibroblasts and their extracellular matrix: fibrillar collagens and decorin.
    "connective tissue": ["COL1A1", "COL1A2", "COL3A1", "DCN"],
    # Adipocytes: adiponectin, perilipin 1, fatty-acid-binding protein 4 and leptin.
    "adipose tissue": ["ADIPOQ", "PLIN1", "FABP4", "LEP"],
}

QUERY_KEY = "bench_query"


# Metrics


def auroc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Return the area under the ROC curve of ``scores`` for ``positive`` spots versus the rest.

    Returns None when every spot, or no spot, is positive, because the ROC curve is then undefined.
    """
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, np.asarray(scores, dtype=np.float64)))


def precision_at_k(positive: np.ndarray, scores: np.ndarray, k: int | None = None) -> float | None:
    """Return the fraction of positive spots among the ``k`` highest scores (``k`` = number of positives).

    With the default ``k`` this is the R-precision. Ties are broken by spot order. Returns None when there is
    no positive spot.
    """
    positive = np.asarray(positive, dtype=bool)
    k = int(positive.sum()) if k is None else k
    if k <= 0:
        return None
    if k > len(positive):
        raise ValueError(f"k={k} is larger than the number of spots ({len(positive)}).")
    top = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]
    return float(positive[top].mean())


# Baselines


def marker_score(adata: AnnData, genes: Sequence[str], seed: int = 0) -> np.ndarray:
    """Return ``scanpy.tl.score_genes`` of ``genes`` on the section's log1p(CP10k) expression.

    Genes missing from ``adata.var_names`` are skipped.
    """
    present = [gene for gene in genes if gene in adata.var_names]
    if not present:
        raise ValueError(f"None of the marker genes {list(genes)} is in adata.var_names.")
    values = sc.AnnData(X=log1p_cp10k(adata), obs=adata.obs[[]].copy(), var=adata.var[[]].copy())
    sc.tl.score_genes(values, present, score_name="score", random_state=seed, use_raw=False)
    return values.obs["score"].to_numpy(dtype=np.float64)


def random_scores(n: int, generator: np.random.Generator) -> np.ndarray:
    """Return uniform random scores, a retrieval baseline with an expected AUROC of 0.5."""
    return generator.random(n)


# Tasks


def text_to_region(
    adatas: Mapping[str, AnnData],
    *,
    test_sections: Sequence[str],
    label_key: str = "pathology",
    queries: Mapping[str, str] | None = None,
    markers: Mapping[str, Sequence[str]] | None = None,
    ignore_labels: Sequence[str] = HER2ST_IGNORED_LABELS,
    epochs: int = 20,
    seed: int = 0,
    n_genes: int = 1000,
    config: OmniSTConfig | None = None,
    models: ModelCache | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Score each region query on held-out sections by AUROC and precision@k.

    For each test section, omnist is trained on every other section of ``adatas`` with
    ``build_instructions(label_keys=[label_key])`` and scores the spots with ``translate(test, query)``.
    Baselines: ``marker_score`` (``scanpy.tl.score_genes`` of :data:`MARKER_GENES`) and ``random``.

    Only labelled spots outside ``ignore_labels`` are scored. A query is scored on a section that has spots
    of its region and spots of other regions. Per section, AUROC (region vs rest) and precision@k (k = spots
    of the region) are averaged over the scored queries.

    Returns
    -------
    ``{method: {"auroc", "precision_at_k": float, "per_section": {section: {metric: float}},
    "per_region": {region: {"query": str, "auroc": float, "precision_at_k": float}}}}``; the metrics average
    the sections, and ``per_region`` averages each query over the sections where it was scored.
    """
    queries = dict(REGION_QUERIES if queries is None else queries)
    markers = dict(MARKER_GENES if markers is None else markers)
    missing = [region for region in queries if region not in markers]
    if missing:
        raise ValueError(f"Regions {missing} have a query but no marker genes: add them to markers.")
    check_sections(adatas, test_sections, label_key)
    models = ModelCache() if models is None else models
    generator = np.random.default_rng(seed)
    by_region: dict[str, dict[str, dict[str, dict]]] = {method: {} for method in RETRIEVAL_METHODS}

    for held_out in test_sections:
        start = time.perf_counter()
        training = [name for name in adatas if name != held_out]
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
        test = adatas[held_out].copy()
        scored = scored_mask(test.obs[label_key], ignore_labels)
        labels = test.obs[label_key].to_numpy(dtype=object)[scored]
        for method in RETRIEVAL_METHODS:
            by_region[method][held_out] = {}

        for region, query in queries.items():
            positive = labels == region
            if positive.all() or not positive.any():
                logger.info("text_to_region %s: no spots of %r or no other spots, query skipped", held_out, region)
                continue
            scores = {
                "omnist": _query_scores(test, query, model)[scored],
                "marker_score": marker_score(test, markers[region], seed)[scored],
                "random": random_scores(int(scored.sum()), generator),
            }
            for method, values in scores.items():
                by_region[method][held_out][region] = {
                    "auroc": auroc(positive, values),
                    "precision_at_k": precision_at_k(positive, values),
                }
        logger.info("text_to_region held-out %s (%.0f s)", held_out, time.perf_counter() - start)

    return {method: _retrieval_record(sections, queries) for method, sections in by_region.items()}


def zero_shot(
    adatas: Mapping[str, AnnData],
    *,
    label_key: str,
    held_out_label: str,
    query: str,
    instruction: str,
    test_sections: Sequence[str],
    ignore_labels: Sequence[str] = (),
    epochs: int = 20,
    seed: int = 0,
    n_genes: int = 1000,
    config: OmniSTConfig | None = None,
    models: ModelCache | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Find and assign a label that training never showed.

    Spots labelled ``held_out_label`` (and ``ignore_labels``) become unlabelled in the training sections, so
    the model is never trained on that name. On each test section:

    - ``retrieval_auroc`` and ``retrieval_precision_at_k``: ``translate(test, query)`` scores, held-out label
      vs the other labelled spots;
    - ``held_out_recall``: the fraction of held-out spots that ``translate(test, instruction, labels=...)``
      assigns to ``held_out_label`` when the candidates are every label of ``adatas``, the held-out one included.

    The ``random`` baseline draws uniform scores and uniform labels from the same candidates. A section
    without spots of ``held_out_label`` gets None for every metric and trains no model.

    Returns
    -------
    ``{method: {"retrieval_auroc", "retrieval_precision_at_k", "held_out_recall": float,
    "per_section": {section: {metric: float}}}}``; the metrics average the sections.
    """
    check_sections(adatas, test_sections, label_key)
    candidates = label_values(adatas, label_key, ignore_labels)
    if held_out_label not in candidates:
        raise ValueError(f"Held-out label {held_out_label!r} is not among the labels {candidates}.")
    models = ModelCache() if models is None else models
    generator = np.random.default_rng(seed)
    per_section: dict[str, dict] = {method: {} for method in ZERO_SHOT_METHODS}

    for held_out in test_sections:
        start = time.perf_counter()
        test = adatas[held_out].copy()
        scored = scored_mask(test.obs[label_key], ignore_labels)
        positive = test.obs[label_key].to_numpy(dtype=object)[scored] == held_out_label
        if not positive.any():
            logger.info("zero_shot %s: no spots of %r, section skipped", held_out, held_out_label)
            for method in ZERO_SHOT_METHODS:
                per_section[method][held_out] = dict.fromkeys(ZERO_SHOT_METRICS)
            continue

        training = [name for name in adatas if name != held_out]
        model = models.get(
            adatas,
            training,
            label_key=label_key,
            hidden_labels=[*ignore_labels, held_out_label],
            epochs=epochs,
            seed=seed,
            n_genes=n_genes,
            config=config,
            progress=progress,
        )
        scores = _query_scores(test, query, model)[scored]
        assigned = _assign(test, instruction, model, candidates)[scored]
        per_section["omnist"][held_out] = _zero_shot_scores(positive, scores, assigned, held_out_label)

        scores = random_scores(int(scored.sum()), generator)
        assigned = generator.choice(np.asarray(candidates, dtype=object), size=int(scored.sum()))
        per_section["random"][held_out] = _zero_shot_scores(positive, scores, assigned, held_out_label)
        logger.info("zero_shot held-out %s (%.0f s)", held_out, time.perf_counter() - start)

    return {method: summarise(scores) for method, scores in per_section.items()}


def _query_scores(adata: AnnData, query: str, model: OmniST) -> np.ndarray:
    """Return omnist's retrieval score of every spot for ``query``, written to a scratch key of ``adata`` first."""
    translate(adata, query, model=model, key_added=QUERY_KEY, progress=False)
    task = adata.uns[QUERY_KEY]["params"]["task"]
    if task != "text_to_region":
        raise ValueError(f"Query {query!r} resolved to task {task!r}, not text_to_region: rephrase the query.")
    return adata.obs[QUERY_KEY].to_numpy(dtype=np.float64)


def _assign(adata: AnnData, instruction: str, model: OmniST, candidates: Sequence[str]) -> np.ndarray:
    """Return omnist's label for every spot among ``candidates``, written to a scratch key of ``adata`` first."""
    translate(adata, instruction, model=model, key_added=QUERY_KEY, labels=list(candidates), progress=False)
    task = adata.uns[QUERY_KEY]["params"]["task"]
    if task != "expression_to_domain":
        raise ValueError(f"Instruction {instruction!r} resolved to task {task!r}, not expression_to_domain.")
    return adata.obs[QUERY_KEY].to_numpy(dtype=object)


def _zero_shot_scores(positive: np.ndarray, scores: np.ndarray, assigned: np.ndarray, label: str) -> dict:
    recall = float(np.mean(assigned[positive] == label)) if positive.any() else None
    return {
        "retrieval_auroc": auroc(positive, scores),
        "retrieval_precision_at_k": precision_at_k(positive, scores),
        "held_out_recall": recall,
    }


def _retrieval_record(by_section: Mapping[str, Mapping[str, dict]], queries: Mapping[str, str]) -> dict:
    """Average a method's per-query scores into per-section metrics and per-region means."""
    per_section = {
        section: {
            metric: _mean([scores[metric] for scores in regions.values()]) for metric in ("auroc", "precision_at_k")
        }
        for section, regions in by_section.items()
    }
    record = summarise(per_section)
    record["per_region"] = {}
    for region, query in queries.items():
        scored = [regions[region] for regions in by_section.values() if region in regions]
        if scored:
            record["per_region"][region] = {
                "query": query,
                "auroc": _mean([scores["auroc"] for scores in scored]),
                "precision_at_k": _mean([scores["precision_at_k"] for scores in scored]),
            }
    return record


def _mean(values: Sequence[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None
