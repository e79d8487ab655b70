"""Tests of the label benchmark tasks: metrics, baselines, one small run of each task and the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse
from sklearn.metrics import adjusted_rand_score

from omnist.bench import (
    DLPFC,
    HER2ST,
    MARKER_GENES,
    REGION_QUERIES,
    ModelCache,
    auroc,
    classification_scores,
    cluster_kmeans,
    domains,
    explain_regions,
    expression_to_domain,
    format_table,
    hvg_expression,
    load_dlpfc,
    load_pathology_sections,
    logreg_pca,
    marker_score,
    precision_at_k,
    random_scores,
    smooth_spatially,
    summarise,
    text_to_region,
    write_results,
    zero_shot,
)
from omnist.bench._domains import hide_labels, scored_mask
from omnist.cli import _parser, main

SMALL = {"epochs": 1, "seed": 0, "n_genes": 200, "progress": False}
DLPFC_SPOTS = 600
HER2ST_SECTIONS = ["A1", "B1", "C1"]
DOMAIN_METRICS = {"macro_f1", "accuracy", "ari"}
ZERO_SHOT_METRICS = {"retrieval_auroc", "retrieval_precision_at_k", "held_out_recall"}


def _check_record(record: dict, metrics: set[str], sections: list[str]) -> None:
    """Assert the layout ``{metric: float, "per_section": {section: {metric: float}}}`` with values in [-1, 1]."""
    assert set(record) - {"per_region"} == metrics | {"per_section"}
    assert list(record["per_section"]) == sections
    for metric in metrics:
        assert isinstance(record[metric], float), metric
        assert -1.0 <= record[metric] <= 1.0, metric
        assert set(record["per_section"][sections[0]]) == metrics
        values = [scores[metric] for scores in record["per_section"].values()]
        assert record[metric] == pytest.approx(np.mean(values)), metric


# Classification metrics


def test_classification_scores_perfect():
    scores = classification_scores(["a", "b", "c", "a"], ["a", "b", "c", "a"])
    assert scores == {"macro_f1": 1.0, "accuracy": 1.0, "ari": 1.0}


def test_classification_scores_known_values():
    true = ["a", "a", "b", "b"]
    predicted = ["a", "b", "b", "b"]
    scores = classification_scores(true, predicted)
    # F1 of a = 2·1·0.5 / 1.5 = 2/3; F1 of b = 2·(2/3)·1 / (5/3) = 0.8.
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["ari"] == pytest.approx(adjusted_rand_score(true, predicted))


def test_classification_scores_extra_predicted_class():
    # "c" is never true: it lowers the recall of b but adds no class of its own to the macro average.
    scores = classification_scores(["a", "a", "b", "b"], ["a", "a", "b", "c"])
    assert scores["macro_f1"] == pytest.approx((1.0 + 2 / 3) / 2)


def test_classification_scores_shape_mismatch():
    with pytest.raises(ValueError, match="Shapes differ"):
        classification_scores(["a", "b"], ["a"])


def test_classification_scores_empty():
    with pytest.raises(ValueError, match="No labelled spots"):
        classification_scores([], [])


def test_scored_mask_nan_and_ignored():
    labels = pd.Series(["L1", np.nan, "undetermined", "WM"], dtype="category")
    assert scored_mask(labels).tolist() == [True, False, True, True]
    assert scored_mask(labels, ["undetermined"]).tolist() == [True, False, False, True]


def test_hide_labels_copy():
    adata = AnnData(X=np.ones((3, 2)), obs=pd.DataFrame({"layer": pd.Categorical(["L1", "WM", "L2"])}))
    hidden = hide_labels(adata, "layer", ["WM"])
    assert hidden.obs["layer"].isna().tolist() == [False, True, False]
    assert "WM" not in hidden.obs["layer"].cat.categories
    assert adata.obs["layer"].tolist() == ["L1", "WM", "L2"]


# Retrieval metrics


def test_auroc_perfect_and_reversed():
    positive = np.array([True, True, False, False])
    assert auroc(positive, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert auroc(positive, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0


def test_auroc_ties_half():
    assert auroc(np.array([True, False, True, False]), np.zeros(4)) == 0.5


def test_auroc_undefined_one_class():
    assert auroc(np.array([True, True]), np.array([0.1, 0.2])) is None
    assert auroc(np.array([False, False]), np.array([0.1, 0.2])) is None


def test_precision_at_k_known():
    positive = np.array([True, False, True, False, False])
    scores = np.array([0.9, 0.8, 0.1, 0.3, 0.2])
    # k = 2 positives; the two highest scores are spots 0 (positive) and 1 (negative).
    assert precision_at_k(positive, scores) == 0.5
    assert precision_at_k(positive, scores, k=1) == 1.0


def test_precision_at_k_ties_by_order():
    assert precision_at_k(np.array([False, True]), np.zeros(2)) == 0.0


def test_precision_at_k_no_positive():
    assert precision_at_k(np.zeros(3, dtype=bool), np.arange(3.0)) is None


def test_precision_at_k_too_large():
    with pytest.raises(ValueError, match="larger than the number of spots"):
        precision_at_k(np.array([True, False]), np.arange(2.0), k=3)


def test_random_scores_auroc_half():
    generator = np.random.default_rng(0)
    positive = np.arange(4000) % 3 == 0
    assert auroc(positive, random_scores(4000, generator)) == pytest.approx(0.5, abs=0.03)


# Records, tables and results.json


def test_summarise_means_skip_none():
    record = summarise({"A1": {"auroc": 0.6, "ari": None}, "B1": {"auroc": 0.8, "ari": 0.4}})
    assert record["auroc"] == pytest.approx(0.7)
    assert record["ari"] == pytest.approx(0.4)
    assert record["per_section"] == {"A1": {"auroc": 0.6, "ari": None}, "B1": {"auroc": 0.8, "ari": 0.4}}


def test_summarise_all_none():
    assert summarise({"A1": {"auroc": None}})["auroc"] is None


def test_format_table_single_metric_dict_sections():
    results = {
        "omnist": {"ari": 0.5, "per_section": {"151673": {"ari": 0.4}, "151674": {"ari": 0.6}}},
        "kmeans_pca": {"ari": 0.3, "per_section": {"151673": {"ari": 0.3}, "151674": {"ari": None}}},
    }
    lines = format_table("domains_dlpfc", results).splitlines()
    assert lines[0].split() == ["domains_dlpfc", "mean", "151673", "151674"]
    assert lines[2].split() == ["omnist", "0.500", "0.400", "0.600"]
    assert lines[3].split() == ["kmeans_pca", "0.300", "0.300", "-"]


def test_format_table_metric_rows():
    results = {
        "omnist": {
            "auroc": 0.75,
            "precision_at_k": 0.5,
            "per_section": {"B1": {"auroc": 0.75, "precision_at_k": 0.5}},
            "per_region": {"adipose tissue": {"query": "find adipose tissue", "auroc": 0.75}},
        }
    }
    lines = format_table("text_to_region_her2st", results).splitlines()
    assert lines[0].split() == ["text_to_region_her2st", "metric", "mean", "B1"]
    assert lines[2].split() == ["omnist", "auroc", "0.750", "0.750"]
    assert lines[3].split() == ["omnist", "precision_at_k", "0.500", "0.500"]
    assert len(lines) == 4


def test_format_table_float_sections_unchanged():
    results = {"omnist": {"mean_pearson": 0.25, "per_section": {"C2": 0.2, "C3": 0.3}}}
    lines = format_table("image_to_expression", results).splitlines()
    assert lines[0] == f"{'image_to_expression':<22}{'mean':>8}{'C2':>8}{'C3':>8}"
    assert lines[2] == f"{'omnist':<22}{0.25:>8.3f}{0.2:>8.3f}{0.3:>8.3f}"


def test_write_results_nan_as_null(tmp_path):
    path = write_results({"task": {"random": {"auroc": float("nan"), "per_section": {"B1": {"auroc": 0.5}}}}}, tmp_path)
    assert path == tmp_path / "results.json"
    assert json.loads(path.read_text()) == {"task": {"random": {"auroc": None, "per_section": {"B1": {"auroc": 0.5}}}}}


# Baselines on synthetic data


def _blobs(n_per_class: int, n_features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    centres = generator.normal(scale=5.0, size=(3, n_features))
    labels = np.repeat(["x", "y", "z"], n_per_class)
    values = centres[np.repeat(np.arange(3), n_per_class)] + generator.normal(size=(3 * n_per_class, n_features))
    return values, labels


def test_logreg_pca_separable():
    train_values, train_labels = _blobs(60, 80, seed=0)
    generator = np.random.default_rng(1)
    test_values = train_values + generator.normal(scale=0.5, size=train_values.shape)
    predicted = logreg_pca(train_values, train_labels, test_values, n_components=10)
    assert np.mean(predicted == train_labels) > 0.95


def test_logreg_pca_more_components_than_spots():
    train_values, train_labels = _blobs(5, 80, seed=2)
    predicted = logreg_pca(train_values, train_labels, train_values, n_components=50)
    assert predicted.shape == (15,)


def test_cluster_kmeans_separable():
    values, labels = _blobs(40, 10, seed=3)
    assert adjusted_rand_score(labels, cluster_kmeans(values, 3, seed=0)) == 1.0


def test_smooth_spatially_row_of_spots():
    # Eight spots on a line 1 unit apart; with 2 neighbours an inner spot averages itself and both sides.
    adata = AnnData(X=np.zeros((8, 1)), obsm={"spatial": np.column_stack([np.arange(8.0), np.zeros(8)])})
    values = np.eye(8)[:, :1] * 3.0
    smoothed = smooth_spatially(adata, values, n_neighs=2)
    assert smoothed[0, 0] == pytest.approx(1.0)
    assert smoothed[1, 0] == pytest.approx(1.0)
    assert smoothed[2, 0] == pytest.approx(0.0)


def _marker_section(seed: int = 0) -> tuple[AnnData, np.ndarray]:
    generator = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(200)] + ["ADIPOQ", "PLIN1", "FABP4", "LEP"]
    counts = generator.poisson(5.0, size=(100, len(genes))).astype(np.float32)
    fat = np.arange(100) < 30
    counts[np.ix_(fat, np.arange(200, 204))] += 60.0
    adata = AnnData(X=sparse.csr_matrix(counts), var=pd.DataFrame(index=genes))
    return adata, fat


def test_marker_score_finds_marked_spots():
    adata, fat = _marker_section()
    scores = marker_score(adata, MARKER_GENES["adipose tissue"])
    assert scores.shape == (100,)
    assert auroc(fat, scores) > 0.95


def test_marker_score_skips_missing_genes():
    adata, fat = _marker_section()
    scores = marker_score(adata, [*MARKER_GENES["adipose tissue"], "NOT_A_GENE"])
    assert auroc(fat, scores) > 0.95


def test_marker_score_no_gene_present():
    adata, _ = _marker_section()
    with pytest.raises(ValueError, match="None of the marker genes"):
        marker_score(adata, ["NOT_A_GENE"])


def test_hvg_expression_shared_genes():
    generator = np.random.default_rng(4)
    first = AnnData(X=generator.poisson(3.0, size=(30, 50)).astype(np.float32))
    first.var_names = [f"G{i}" for i in range(50)]
    test = AnnData(X=generator.poisson(3.0, size=(20, 40)).astype(np.float32))
    test.var_names = [f"G{i}" for i in range(10, 50)]
    train_values, test_values = hvg_expression([first], test, n_top_genes=15)
    assert train_values.shape == (30, 15)
    assert test_values.shape == (20, 15)


def test_region_queries_have_markers():
    assert set(REGION_QUERIES) == set(MARKER_GENES)
    assert "undetermined" not in REGION_QUERIES


# Tasks on real sections (first 600 spots of each DLPFC section, three her2st sections)


@pytest.fixture(scope="module")
def dlpfc_sections(data_dir):
    return load_dlpfc(data_dir / "dlpfc", max_spots=DLPFC_SPOTS)


@pytest.fixture(scope="module")
def her2st_sections(her2st_dir):
    return load_pathology_sections(her2st_dir, HER2ST_SECTIONS)


@pytest.fixture(scope="module")
def small_options(make_small_config):
    return {**SMALL, "config": make_small_config()}


@pytest.fixture(scope="module")
def dlpfc_models():
    return ModelCache()


@pytest.fixture(scope="module")
def her2st_models():
    return ModelCache()


@pytest.fixture(scope="module")
def dlpfc_domain_results(dlpfc_sections, dlpfc_models, small_options):
    return expression_to_domain(
        dlpfc_sections,
        label_key=DLPFC.label_key,
        test_sections=[DLPFC.test_section],
        instruction=DLPFC.instruction,
        models=dlpfc_models,
        **small_options,
    )


def test_load_dlpfc_subset(dlpfc_sections):
    assert list(dlpfc_sections) == list(DLPFC.sections)
    assert all(adata.n_obs == DLPFC_SPOTS for adata in dlpfc_sections.values())


def test_load_dlpfc_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="151673.h5ad"):
        load_dlpfc(tmp_path)


def test_load_pathology_sections_unlabelled(her2st_dir):
    with pytest.raises(ValueError, match=r"Sections \['C2'\] have no pathologist labels"):
        load_pathology_sections(her2st_dir, ["C2"])


def test_expression_to_domain_dlpfc_layout(dlpfc_domain_results, dlpfc_models):
    assert set(dlpfc_domain_results) == {"omnist", "logreg_pca"}
    for record in dlpfc_domain_results.values():
        _check_record(record, DOMAIN_METRICS, [DLPFC.test_section])
    assert len(dlpfc_models) == 1


def test_expression_to_domain_logreg_finds_layers(dlpfc_domain_results):
    # Measured on the first 600 spots of each section: accuracy 0.70 on 151675; 7 layers give 0.14 by chance.
    assert dlpfc_domain_results["logreg_pca"]["accuracy"] > 0.3


def test_domains_reuses_model(dlpfc_sections, dlpfc_models, dlpfc_domain_results, small_options):
    results = domains(dlpfc_sections, sections=[DLPFC.test_section], models=dlpfc_models, **small_options)
    assert list(results) == ["omnist", "kmeans_pca", "kmeans_pca_smoothed"]
    for record in results.values():
        _check_record(record, {"ari"}, [DLPFC.test_section])
    # The 151675 model of expression_to_domain (trained on 151673 and 151674) serves the embedding.
    assert len(dlpfc_models) == 1


def test_zero_shot_dlpfc_layout(dlpfc_sections, dlpfc_models, dlpfc_domain_results, small_options):
    results = zero_shot(
        dlpfc_sections,
        label_key=DLPFC.label_key,
        held_out_label=DLPFC.zero_shot_label,
        query=DLPFC.zero_shot_query,
        instruction=DLPFC.instruction,
        test_sections=[DLPFC.test_section],
        models=dlpfc_models,
        **small_options,
    )
    assert list(results) == ["omnist", "random"]
    for record in results.values():
        _check_record(record, ZERO_SHOT_METRICS, [DLPFC.test_section])
    for record in results.values():
        assert 0.0 <= record["held_out_recall"] <= 1.0
    # The model without WM is a second model beside the one of expression_to_domain.
    assert len(dlpfc_models) == 2


def test_zero_shot_unknown_label(dlpfc_sections):
    with pytest.raises(ValueError, match="Held-out label 'L9' is not among the labels"):
        zero_shot(
            dlpfc_sections,
            label_key="layer",
            held_out_label="L9",
            query="find layer 9",
            instruction=DLPFC.instruction,
            test_sections=[DLPFC.test_section],
        )


def test_expression_to_domain_unknown_section(dlpfc_sections):
    with pytest.raises(ValueError, match=r"Sections \['B1'\] are not among the loaded sections"):
        expression_to_domain(dlpfc_sections, label_key="layer", test_sections=["B1"])


def test_her2st_domain_and_retrieval(her2st_sections, her2st_models, small_options):
    domain_results = expression_to_domain(
        her2st_sections,
        label_key=HER2ST.label_key,
        test_sections=[HER2ST.test_section],
        ignore_labels=HER2ST.ignore_labels,
        instruction=HER2ST.instruction,
        models=her2st_models,
        **small_options,
    )
    for record in domain_results.values():
        _check_record(record, DOMAIN_METRICS, [HER2ST.test_section])

    results = text_to_region(
        her2st_sections, test_sections=[HER2ST.test_section], models=her2st_models, **small_options
    )
    assert list(results) == ["omnist", "marker_score", "random"]
    # B1 has invasive cancer, breast glands, connective and adipose tissue, and no in situ cancer or immune spots.
    scored_regions = {"invasive cancer", "breast glands", "connective tissue", "adipose tissue"}
    for record in results.values():
        _check_record(record, {"auroc", "precision_at_k"}, [HER2ST.test_section])
        assert set(record["per_region"]) == scored_regions
        assert record["per_region"]["adipose tissue"]["query"] == REGION_QUERIES["adipose tissue"]
    # Both tasks train on A1 and C1 with the same options, so they share one model.
    assert len(her2st_models) == 1


def test_her2st_explain_regions_scores_every_region(her2st_sections, her2st_models, small_options):
    results = explain_regions(
        her2st_sections,
        label_key=HER2ST.label_key,
        test_sections=[HER2ST.test_section],
        ignore_labels=HER2ST.ignore_labels,
        models=her2st_models,
        **small_options,
    )
    assert list(results) == ["omnist", "omnist_probability", "logreg_pca", "majority"]
    for method, record in results.items():
        scores = record["per_section"][HER2ST.test_section]
        # B1 has four regions once "undetermined" is left out.
        assert scores["n_regions"] == 4.0, method
        assert scores["identity_accuracy"] in {0.0, 0.25, 0.5, 0.75, 1.0}, method
    # Invasive cancer has the most A1 + C1 spots and is one of B1's four regions.
    assert results["majority"]["identity_accuracy"] == 0.25
    # The same training sections and options as the domain task: the model is reused, not trained again.
    assert len(her2st_models) == 1


def test_zero_shot_section_without_label(her2st_sections):
    # Breast glands occur only in B1, so the A1 fold has nothing to find and must not train a model.
    models = ModelCache()
    results = zero_shot(
        her2st_sections,
        label_key=HER2ST.label_key,
        held_out_label="breast glands",
        query="find breast glands",
        instruction=HER2ST.instruction,
        test_sections=["A1"],
        ignore_labels=HER2ST.ignore_labels,
        models=models,
    )
    assert len(models) == 0
    for record in results.values():
        assert record["per_section"] == {"A1": dict.fromkeys(ZERO_SHOT_METRICS)}
        assert record["held_out_recall"] is None


def test_her2st_marker_score_finds_connective(her2st_sections):
    # Measured on C1: collagen and decorin rank its 37 connective-tissue spots above the rest with AUROC 0.75.
    adata = her2st_sections["C1"]
    scored = scored_mask(adata.obs["pathology"], HER2ST.ignore_labels)
    positive = adata.obs["pathology"].to_numpy(dtype=object)[scored] == "connective tissue"
    scores = marker_score(adata, MARKER_GENES["connective tissue"])[scored]
    assert auroc(positive, scores) > 0.65


# Command line


@pytest.mark.parametrize("task", ["expression-to-domain", "domains", "text-to-region", "zero-shot", "explain", "all"])
def test_cli_task_help(task, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", task, "--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for option in ("--data-dir", "--epochs", "--out", "--max-spots"):
        assert option in printed, option


def test_cli_dataset_option_defaults(monkeypatch):
    monkeypatch.setenv("OMNIST_DATA_DIR", "/data/root")
    args = _parser().parse_args(["bench", "expression-to-domain"])
    assert args.data_dir == "/data/root"
    assert args.dataset == ["dlpfc", "her2st"]
    assert args.folds == "one"
    args = _parser().parse_args(["bench", "zero-shot", "--dataset", "her2st", "--folds", "all"])
    assert args.dataset == ["her2st"]
    assert args.folds == "all"


def test_cli_invalid_dataset(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "expression-to-domain", "--dataset", "visium"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'visium'" in capsys.readouterr().err


def test_cli_task_without_data_dir(monkeypatch, capsys):
    monkeypatch.delenv("OMNIST_DATA_DIR", raising=False)
    assert main(["bench", "domains"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_cli_image_to_expression_kept(monkeypatch):
    monkeypatch.setenv("OMNIST_DATA_DIR", "/data/root")
    args = _parser().parse_args(["bench", "image-to-expression"])
    assert args.data_dir == "/data/root/her2st"
    assert args.genes == 250


@pytest.fixture
def fake_tasks(monkeypatch):
    """Replace loaders and task functions of omnist.bench with fakes that record their calls."""
    import omnist.bench

    calls = []

    def fake_task(name):
        def run(adatas, **options):
            sections = options.get("test_sections") or options.get("sections") or list(adatas)
            calls.append((name, list(sections), options.get("models")))
            return {"fake": {"score": 0.5, "per_section": {section: {"score": 0.5} for section in sections}}}

        return run

    def fake_image_to_expression(adatas, **options):
        calls.append(("image_to_expression", list(adatas), None))
        return {"fake": {"mean_pearson": 0.1, "per_section": {"C2": 0.1}}}

    monkeypatch.setattr(omnist.bench, "load_dlpfc", lambda path, sections, max_spots: dict.fromkeys(sections))
    monkeypatch.setattr(
        omnist.bench, "load_pathology_sections", lambda path, sections, max_spots: dict.fromkeys(sections)
    )
    monkeypatch.setattr(omnist.bench, "load_image_sections", lambda path: {"C2": None, "C3": None})

    def fake_expression_to_image(adatas, **options):
        calls.append(("expression_to_image", list(adatas), None))
        return {"fake": {"recall_10": 0.1, "per_section": {"C2": {"recall_10": 0.1}}}}

    monkeypatch.setattr(omnist.bench, "image_to_expression", fake_image_to_expression)
    monkeypatch.setattr(omnist.bench, "expression_to_image", fake_expression_to_image)
    for name in ("expression_to_domain", "domains", "text_to_region", "zero_shot", "explain_regions"):
        monkeypatch.setattr(omnist.bench, name, fake_task(name))
    return calls


def test_cli_all_writes_every_task(fake_tasks, tmp_path, capsys):
    assert main(["bench", "all", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(results) == [
        "expression_to_domain_dlpfc",
        "domains_dlpfc",
        "zero_shot_dlpfc",
        "explain_dlpfc",
        "expression_to_domain_her2st",
        "text_to_region_her2st",
        "zero_shot_her2st",
        "explain_her2st",
        "image_to_expression",
        "expression_to_image",
    ]
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["expression_to_domain_dlpfc", "mean", DLPFC.test_section]
    assert "results.json" in printed


def test_cli_all_shares_models_per_dataset(fake_tasks, tmp_path):
    main(["bench", "all", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    image_tasks = ("image_to_expression", "expression_to_image")
    label_tasks = [(sections, models) for name, sections, models in fake_tasks if name not in image_tasks]
    dlpfc = {id(models) for sections, models in label_tasks if set(sections) <= set(DLPFC.sections)}
    her2st = {id(models) for sections, models in label_tasks if set(sections) <= set(HER2ST.sections)}
    assert len(dlpfc) == 1
    assert len(her2st) == 1
    assert dlpfc != her2st


def test_cli_failure_keeps_finished_tasks(fake_tasks, tmp_path, monkeypatch):
    import omnist.bench

    def fail(adatas, **options):
        raise RuntimeError("zero-shot failed")

    monkeypatch.setattr(omnist.bench, "zero_shot", fail)
    with pytest.raises(RuntimeError, match="zero-shot failed"):
        main(["bench", "all", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["expression_to_domain_dlpfc", "domains_dlpfc"]


def test_cli_folds_all_tests_every_section(fake_tasks, tmp_path):
    main(
        [
            "bench",
            "zero-shot",
            "--dataset",
            "her2st",
            "--folds",
            "all",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path),
        ]
    )
    assert fake_tasks == [("zero_shot", list(HER2ST.sections), fake_tasks[0][2])]


def test_cli_one_fold_default_sections(fake_tasks, tmp_path):
    main(["bench", "expression-to-domain", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    assert [(name, sections) for name, sections, _ in fake_tasks] == [
        ("expression_to_domain", [DLPFC.test_section]),
        ("expression_to_domain", [HER2ST.test_section]),
    ]


def test_cli_domains_every_dlpfc_section(fake_tasks, tmp_path):
    main(["bench", "domains", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    assert [(name, sections) for name, sections, _ in fake_tasks] == [("domains", list(DLPFC.sections))]


def test_results_are_finite_floats(dlpfc_domain_results):
    for record in dlpfc_domain_results.values():
        assert all(math.isfinite(value) for value in record["per_section"][DLPFC.test_section].values())


def test_cli_all_skip_image_tasks(fake_tasks, tmp_path):
    main(["bench", "all", "--skip-image-tasks", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    names = [name for name, _, _ in fake_tasks]
    assert "image_to_expression" not in names
    assert "expression_to_image" not in names
    assert "explain_regions" in names


def test_cli_all_one_dataset(fake_tasks, tmp_path):
    main(["bench", "all", "--dataset", "dlpfc", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == ["expression_to_domain_dlpfc", "domains_dlpfc", "zero_shot_dlpfc", "explain_dlpfc"]


def test_explain_regions_section_without_regions(her2st_sections):
    sections = dict(her2st_sections)
    only_ignored = sections["A1"].copy()
    only_ignored.obs["pathology"] = pd.Categorical(["undetermined"] * only_ignored.n_obs)
    sections["A1"] = only_ignored
    models = ModelCache()
    results = explain_regions(
        sections,
        label_key=HER2ST.label_key,
        test_sections=["A1"],
        ignore_labels=HER2ST.ignore_labels,
        models=models,
    )
    assert len(models) == 0
    for record in results.values():
        assert record["per_section"] == {"A1": {"identity_accuracy": None, "n_regions": None}}
