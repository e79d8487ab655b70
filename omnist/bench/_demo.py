"""The end-to-end demonstration: train on four her2st sections, translate the fifth, draw the result."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

from omnist.bench._baselines import mean_predictor, ridge_probe
from omnist.bench._image_to_expression import INSTRUCTION, format_table, load_image_sections
from omnist.bench._metrics import mean_pearson
from omnist.data.expression import log1p_cp10k, shared_top_genes
from omnist.data.features import image_features

logger = logging.getLogger(__name__)

TRAIN_SECTIONS = ("C2", "C3", "C4", "C5")
TEST_SECTION = "C6"


def run_demo(data_dir: str | Path, out: str | Path, *, epochs: int = 20, seed: int = 0) -> dict:
    """Train on C2–C5, translate C6, print omnist against the baselines and save a figure of C6.

    Writes ``model/`` (the checkpoint), ``C6_translation.png`` and ``C6.h5ad`` (with predictions) to ``out``.
    Returns the mean Pearson r of each method on C6.
    """
    import numpy as np

    from omnist import pl, tl

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    adatas = load_image_sections(data_dir, [*TRAIN_SECTIONS, TEST_SECTION])
    training = [adatas[name] for name in TRAIN_SECTIONS]
    test = adatas[TEST_SECTION]
    genes = shared_top_genes(list(adatas.values()), 250)

    model = tl.train(training, genes=genes, epochs=epochs, seed=seed)
    model.save(out / "model")
    tl.translate(test, INSTRUCTION, model=model)

    train_targets = np.concatenate([log1p_cp10k(adata, genes) for adata in training])
    measured = log1p_cp10k(test, genes)
    train_features = np.concatenate([image_features(adata.obsm["omnist_patches"]) for adata in training])
    scores = {
        "omnist": mean_pearson(measured, test.obsm["omnist_image_to_expression"][genes].to_numpy()),
        "ridge": mean_pearson(
            measured, ridge_probe(train_features, train_targets, image_features(test.obsm["omnist_patches"]))
        ),
        "mean": mean_pearson(measured, mean_predictor(train_targets, test.n_obs)),
    }
    results = {
        method: {"mean_pearson": value, "per_section": {TEST_SECTION: value}} for method, value in scores.items()
    }
    print(format_table("image_to_expression", results))

    figure_path = out / f"{TEST_SECTION}_translation.png"
    pl.translation(test, "omnist_image_to_expression", n_genes=4, show=False, save=figure_path)
    test.write_h5ad(out / f"{TEST_SECTION}.h5ad")
    print(f"figure: {figure_path}")
    return scores
