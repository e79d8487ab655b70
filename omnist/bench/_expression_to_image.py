"""Leave-one-section-out benchmark of expression → H&E patch retrieval on her2st."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from anndata import AnnData
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from omnist.bench._baselines import RIDGE_ALPHAS
from omnist.bench._image_to_expression import held_out_sections
from omnist.bench._report import summarise
from omnist.data.expression import log1p_cp10k, shared_top_genes
from omnist.data.features import image_features
from omnist.model import OmniSTConfig
from omnist.pp import build_instructions
from omnist.tl import train, translate

logger = logging.getLogger(__name__)

INSTRUCTION = "retrieve the H&E patch that matches each spot's expression"
TOP_K = (1, 10)


def retrieval_scores(ranks: np.ndarray, n_gallery: int) -> dict[str, float]:
    """Return recall@k (own patch among the k best) and the median rank as a fraction of the gallery.

    A random ranking gives recall@k = k / n and a median rank fraction of about 0.5.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    scores = {f"recall_{k}": float(np.mean(ranks <= k)) for k in TOP_K}
    scores["median_rank"] = float(np.median(ranks) / n_gallery)
    return scores


def random_retrieval(n_gallery: int) -> dict[str, float]:
    """Return the expected :func:`retrieval_scores` of a uniformly random ranking of ``n_gallery`` patches."""
    scores = {f"recall_{k}": min(k, n_gallery) / n_gallery for k in TOP_K}
    scores["median_rank"] = (n_gallery + 1) / 2 / n_gallery
    return scores


def ridge_retrieval(
    train_expression: np.ndarray,
    train_features: np.ndarray,
    test_expression: np.ndarray,
    test_features: np.ndarray,
    n_components: int = 50,
) -> np.ndarray:
    """Rank held-out patches by a linear map from expression to image features; return each spot's own rank.

    Standardise → PCA → ridge predicts the image features of a spot from its log1p(CP10k) expression. The
    held-out patches are then ranked by cosine similarity between predicted and actual features. Features
    are z-scored within each section, as omnist standardises colour per section.
    """
    n_components = min(n_components, train_expression.shape[1], train_expression.shape[0] - 1)
    model = make_pipeline(
        StandardScaler(), PCA(n_components=n_components, random_state=0), RidgeCV(alphas=RIDGE_ALPHAS)
    )
    predicted = model.fit(train_expression, train_features).predict(test_expression)
    predicted = predicted / np.linalg.norm(predicted, axis=1, keepdims=True).clip(min=1e-12)
    actual = test_features / np.linalg.norm(test_features, axis=1, keepdims=True).clip(min=1e-12)
    similarity = predicted @ actual.T
    own = np.diag(similarity)
    return 1 + (similarity > own[:, None]).sum(axis=1)


def expression_to_image(
    adatas: dict[str, AnnData],
    *,
    n_genes: int = 250,
    epochs: int = 20,
    seed: int = 0,
    config: OmniSTConfig | None = None,
    test_sections: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Run leave-one-section-out expression → H&E patch retrieval for omnist, a ridge map and chance.

    Each held-out spot's expression queries all patches of its own section. The metrics are recall@1,
    recall@10 and the median rank of the spot's own patch as a fraction of the section's spots.

    Parameters
    ----------
    adatas
        Sections with patches in ``obsm["omnist_patches"]``, from :func:`load_image_sections`.
    n_genes
        Genes of the omnist vocabulary and of the ridge map: the most expressed genes shared by all sections.
    epochs
        Training epochs per fold.
    seed
        Seed of the omnist models.
    config
        Sizes of the omnist models.
    test_sections
        Held-out sections (default: every section in turn); each fold trains on all other sections.
    progress
        Show progress bars.

    Returns
    -------
    ``{method: record}`` with methods ``omnist``, ``ridge`` and ``random``; each record contains the metrics
    averaged over held-out sections and ``"per_section"``.
    """
    genes = shared_top_genes(list(adatas.values()), n_genes)
    expression = {name: log1p_cp10k(adata, genes) for name, adata in adatas.items()}
    features = {name: _zscore(image_features(adata.obsm["omnist_patches"])) for name, adata in adatas.items()}
    per_section: dict[str, dict[str, dict]] = {"omnist": {}, "ridge": {}, "random": {}}

    for held_out in held_out_sections(adatas, test_sections):
        test = adatas[held_out]
        start = time.perf_counter()
        training = [name for name in adatas if name != held_out]
        per_section["random"][held_out] = random_retrieval(test.n_obs)
        ranks = ridge_retrieval(
            np.concatenate([expression[name] for name in training]),
            np.concatenate([features[name] for name in training]),
            expression[held_out],
            features[held_out],
        )
        per_section["ridge"][held_out] = retrieval_scores(ranks, test.n_obs)

        sections = []
        for name in training:
            section = adatas[name].copy()
            build_instructions(section)
            sections.append(section)
        model = train(
            sections,
            tasks=["expression_to_image"],
            genes=genes,
            epochs=epochs,
            seed=seed,
            config=config,
            progress=progress,
        )
        result = translate(test, INSTRUCTION, model=model, key_added="bench", copy=True, progress=False)
        per_section["omnist"][held_out] = retrieval_scores(result.obs["bench_rank"].to_numpy(), test.n_obs)
        logger.info(
            "held-out %s: %s (%.0f s)",
            held_out,
            ", ".join(f"{method} recall@10 {per_section[method][held_out]['recall_10']:.3f}" for method in per_section),
            time.perf_counter() - start,
        )
    return {method: summarise(scores) for method, scores in per_section.items()}


def _zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean(axis=0)) / values.std(axis=0).clip(min=1e-6)
