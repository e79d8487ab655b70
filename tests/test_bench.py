"""Tests of the benchmark metrics, baselines, the image → expression run and the ``omnist bench`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from omnist.bench import (
    format_table,
    image_to_expression,
    load_image_sections,
    mean_pearson,
    mean_predictor,
    pearson_per_gene,
    ridge_probe,
)
from omnist.cli import main

METHODS = {"omnist", "ridge", "mean"}
SECTIONS = ["C2", "C3"]


@pytest.fixture(scope="module")
def image_sections(her2st_dir):
    return load_image_sections(her2st_dir, SECTIONS)


@pytest.fixture(scope="module")
def results(image_sections, make_small_config):
    return image_to_expression(image_sections, n_genes=20, epochs=1, config=make_small_config(), progress=False)


# Metrics


def _columns(*columns) -> np.ndarray:
    return np.column_stack(columns).astype(np.float64)


def test_pearson_per_gene_perfect():
    measured = _columns([1.0, 2.0, 3.0, 5.0], [0.0, 1.0, 0.0, 1.0])
    r = pearson_per_gene(measured, 2.0 * measured + 3.0)
    np.testing.assert_allclose(r, [1.0, 1.0], atol=1e-12)


def test_pearson_per_gene_anticorrelated():
    measured = _columns([1.0, 2.0, 3.0, 5.0])
    np.testing.assert_allclose(pearson_per_gene(measured, -measured), [-1.0], atol=1e-12)


def test_pearson_per_gene_constant_prediction_zero():
    measured = _columns([1.0, 2.0, 3.0, 5.0])
    assert pearson_per_gene(measured, np.full_like(measured, 2.5)).tolist() == [0.0]


def test_pearson_per_gene_constant_measurement_nan():
    measured = _columns([1.0, 2.0, 3.0, 5.0], [4.0, 4.0, 4.0, 4.0])
    predicted = _columns([1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0])
    r = pearson_per_gene(measured, predicted)
    assert r[0] == pytest.approx(1.0)
    assert np.isnan(r[1])


def test_pearson_per_gene_known_value():
    measured = _columns([1.0, 2.0, 3.0, 4.0, 5.0])
    predicted = _columns([2.0, 1.0, 4.0, 3.0, 5.0])
    expected = np.corrcoef(measured[:, 0], predicted[:, 0])[0, 1]
    assert pearson_per_gene(measured, predicted)[0] == pytest.approx(expected)


def test_pearson_per_gene_shape_mismatch_raises():
    with pytest.raises(ValueError, match="Shapes differ"):
        pearson_per_gene(np.zeros((4, 2)), np.zeros((4, 3)))


def test_mean_pearson_skips_constant_measurement():
    measured = _columns([1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 5.0], [4.0, 4.0, 4.0, 4.0])
    predicted = _columns([1.0, 2.0, 3.0, 5.0], [5.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    r = pearson_per_gene(measured, predicted)
    assert mean_pearson(measured, predicted) == pytest.approx((1.0 + r[1]) / 2)
    assert math.isfinite(mean_pearson(measured, predicted))


def test_mean_predictor_repeats_training_mean():
    train = _columns([1.0, 3.0], [10.0, 20.0])
    predicted = mean_predictor(train, 3)
    assert predicted.shape == (3, 2)
    np.testing.assert_allclose(predicted, [[2.0, 15.0]] * 3)


# Ridge probe


def test_ridge_probe_recovers_linear_signal():
    generator = np.random.default_rng(0)
    features = generator.normal(size=(300, 30))
    weights = generator.normal(size=(30, 5))
    targets = features @ weights + generator.normal(scale=0.5, size=(300, 5))
    predicted = ridge_probe(features[:200], targets[:200], features[200:])
    assert predicted.shape == (100, 5)
    assert pearson_per_gene(targets[200:], predicted).min() > 0.9


def test_ridge_probe_noise_gives_no_signal():
    generator = np.random.default_rng(1)
    features = generator.normal(size=(300, 30))
    targets = generator.normal(size=(300, 5))
    predicted = ridge_probe(features[:200], targets[:200], features[200:])
    assert abs(mean_pearson(targets[200:], predicted)) < 0.2


def test_ridge_probe_more_components_than_spots():
    generator = np.random.default_rng(2)
    features = generator.normal(size=(20, 80))
    targets = features[:, :3] * 2.0
    predicted = ridge_probe(features[:15], targets[:15], features[15:], n_components=50)
    assert predicted.shape == (5, 3)
    assert np.isfinite(predicted).all()


# Table


def test_format_table_row_per_method():
    results = {
        "omnist": {"mean_pearson": 0.25, "per_section": {"C2": 0.2, "C3": 0.3}},
        "ridge": {"mean_pearson": 0.15, "per_section": {"C2": 0.1, "C3": 0.2}},
        "mean": {"mean_pearson": 0.0, "per_section": {"C2": 0.0, "C3": 0.0}},
    }
    lines = format_table("image_to_expression", results).splitlines()
    assert len(lines) == 2 + len(results)
    assert lines[0].split() == ["image_to_expression", "mean", "C2", "C3"]
    assert set(lines[1]) == {"-"}
    assert lines[2].split() == ["omnist", "0.250", "0.200", "0.300"]
    assert [line.split()[0] for line in lines[2:]] == list(results)


# Sections


def test_load_image_sections_patches(image_sections):
    assert list(image_sections) == SECTIONS
    for adata in image_sections.values():
        assert adata.obsm["omnist_patches"].shape[1:] == (64, 64, 3)


def test_load_image_sections_without_image_raises(her2st_dir):
    with pytest.raises(ValueError, match=r"Sections \['A1'\] have no H&E image or counts"):
        load_image_sections(her2st_dir, ["C2", "A1"])


def test_load_image_sections_single_section_raises(her2st_dir):
    with pytest.raises(ValueError, match="at least 2 sections"):
        load_image_sections(her2st_dir, ["C2"])


# Leave-one-section-out run on real sections


def test_image_to_expression_methods(results):
    assert set(results) == METHODS


def test_image_to_expression_per_section(results):
    for method, record in results.items():
        assert set(record) == {"mean_pearson", "per_section"}, method
        assert list(record["per_section"]) == SECTIONS, method


def test_image_to_expression_finite(results):
    for method, record in results.items():
        values = [record["mean_pearson"], *record["per_section"].values()]
        assert all(isinstance(value, float) for value in values), method
        assert all(math.isfinite(value) for value in values), method
        assert all(-1.0 <= value <= 1.0 for value in values), method


def test_image_to_expression_mean_of_sections(results):
    for method, record in results.items():
        assert record["mean_pearson"] == pytest.approx(np.mean(list(record["per_section"].values()))), method


def test_image_to_expression_mean_predictor_zero(results):
    # A constant prediction carries no information about which spots are higher.
    assert results["mean"]["per_section"] == {"C2": 0.0, "C3": 0.0}


def test_image_to_expression_ridge_finds_signal(results):
    # Measured with 20 genes: ridge reaches r = 0.20 on C2 and 0.34 on C3.
    assert results["ridge"]["mean_pearson"] > 0.1


def test_image_to_expression_leaves_sections(image_sections, results):
    for adata in image_sections.values():
        assert "bench" not in adata.obsm
        assert "bench" not in adata.uns


# Command line


@pytest.mark.slow
def test_cli_bench_writes_results(her2st_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    status = main(
        [
            "bench",
            "image-to-expression",
            "--data-dir",
            str(her2st_dir),
            "--sections",
            *SECTIONS,
            "--epochs",
            "1",
            "--genes",
            "20",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["image_to_expression"]
    assert set(results["image_to_expression"]) == METHODS
    for method, record in results["image_to_expression"].items():
        assert set(record) == {"mean_pearson", "per_section"}, method
        assert isinstance(record["mean_pearson"], float), method
        assert list(record["per_section"]) == SECTIONS, method
        assert all(isinstance(value, float) for value in record["per_section"].values()), method
    printed = capsys.readouterr().out
    assert "results.json" in printed
    assert printed.splitlines()[0].split() == ["image_to_expression", "mean", *SECTIONS]


def test_cli_bench_without_data_dir(monkeypatch, capsys):
    monkeypatch.delenv("OMNIST_DATA_DIR", raising=False)
    status = main(["bench", "image-to-expression", "--sections", "C2", "C3"])
    assert status == 2
    assert "--data-dir" in capsys.readouterr().err


def test_image_to_expression_test_sections_one_fold(image_sections, make_small_config):
    results = image_to_expression(
        image_sections, n_genes=20, epochs=1, config=make_small_config(), test_sections=["C3"], progress=False
    )
    for method, record in results.items():
        assert list(record["per_section"]) == ["C3"], method
        assert record["mean_pearson"] == record["per_section"]["C3"], method


def test_image_to_expression_unknown_test_section_raises(image_sections):
    with pytest.raises(ValueError, match="'C9'"):
        image_to_expression(image_sections, test_sections=["C9"], progress=False)
