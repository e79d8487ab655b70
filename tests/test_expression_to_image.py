"""Tests of expression → H&E patch retrieval: training, the slots translate writes, errors and the benchmark."""

from __future__ import annotations

import json
import warnings

import anndata as ad
import numpy as np
import pytest

import omnist
from omnist.bench import expression_to_image, load_image_sections, random_retrieval, retrieval_scores
from omnist.cli import main

INSTRUCTION = "retrieve the H&E patch that matches each spot's expression"
EPOCHS = 15


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def retrieval_model(load_her2st, make_small_config):
    sections = []
    for name in ("C2", "C3"):
        adata = load_her2st(name)
        omnist.pp.build_instructions(adata)
        sections.append(adata)
    return omnist.tl.train(
        sections,
        tasks=["expression_to_image"],
        n_genes=200,
        epochs=EPOCHS,
        seed=0,
        config=make_small_config(),
        progress=False,
    )


def _translate(adata, model, **kwargs):
    return omnist.tl.translate(adata, INSTRUCTION, model=model, progress=False, **kwargs)


@pytest.fixture(scope="module")
def c4_matched(retrieval_model, load_her2st):
    adata = load_her2st("C4")
    _translate(adata, retrieval_model, key_added="patch", top_k=5)
    return adata


def test_build_instructions_adds_patch_retrieval(load_her2st):
    adata = load_her2st("C2")
    omnist.pp.build_instructions(adata)
    rows = adata.uns["omnist"]["instructions"].query("task == 'expression_to_image'")
    assert len(rows) > 0
    assert set(rows["target"]) == {"image"}
    assert set(rows["output"]) == {"embedding"}


def test_build_instructions_without_image_skips_retrieval(load_her2st):
    adata = load_her2st("A1")
    omnist.pp.build_instructions(adata, label_keys=["pathology"])
    assert "expression_to_image" not in set(adata.uns["omnist"]["instructions"]["task"])


def test_train_patch_retrieval_loss_falls(retrieval_model):
    assert [task.name for task in retrieval_model.tasks] == ["expression_to_image"]
    losses = [record["expression_to_image"] for record in retrieval_model.history]
    assert losses[-1] < losses[0]


def test_patch_retrieval_above_chance(c4_matched):
    # Random ranking puts a spot's own patch at rank (n + 1) / 2 on average.
    ranks = c4_matched.obs["patch_rank"].to_numpy()
    print(f"C4 own-patch rank: median {np.median(ranks):.0f}, mean {np.mean(ranks):.1f} of {c4_matched.n_obs} spots")
    assert np.median(ranks) < c4_matched.n_obs / 3
    assert np.mean(ranks) < 0.4 * c4_matched.n_obs


def test_patch_retrieval_writes_documented_slots(c4_matched, load_her2st):
    before = load_her2st("C4")
    assert set(c4_matched.obsm) - set(before.obsm) == {"patch", "patch_scores"}
    assert set(c4_matched.obs.columns) - set(before.obs.columns) == {"patch_rank"}
    assert set(c4_matched.uns) - set(before.uns) == {"patch"}
    assert c4_matched.uns["patch"]["params"]["task"] == "expression_to_image"
    assert c4_matched.uns["patch"]["n_gallery"] == c4_matched.n_obs


def test_patch_retrieval_top_k_sorted(c4_matched):
    names = c4_matched.obsm["patch"]
    scores = c4_matched.obsm["patch_scores"].to_numpy()
    assert list(names.columns) == ["1", "2", "3", "4", "5"]
    assert names.isin(c4_matched.obs_names).all().all()
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert np.all(np.abs(scores) <= 1 + 1e-5)
    # A spot whose own patch ranks first has its own name in column "1".
    first = c4_matched.obs["patch_rank"].to_numpy() == 1
    assert (names["1"].to_numpy()[first] == c4_matched.obs_names.to_numpy()[first]).all()


def test_patch_retrieval_other_gallery(retrieval_model, load_her2st):
    query, gallery = load_her2st("A1"), load_her2st("C4")
    _translate(query, retrieval_model, key_added="match", gallery=gallery, top_k=3)
    assert "match_rank" not in query.obs
    assert query.obsm["match"].shape == (query.n_obs, 3)
    assert query.obsm["match"].isin(gallery.obs_names).all().all()
    assert query.uns["match"]["n_gallery"] == gallery.n_obs
    assert "match" not in gallery.uns
    assert "match" not in gallery.obsm


def test_patch_retrieval_small_gallery(retrieval_model, load_her2st):
    adata = load_her2st("C4")
    gallery = adata[:4].copy()
    _translate(adata, retrieval_model, key_added="few", gallery=gallery, top_k=50)
    assert adata.obsm["few"].shape == (adata.n_obs, 4)


def test_patch_retrieval_bad_top_k(retrieval_model, load_her2st):
    adata = load_her2st("C4")
    with pytest.raises(ValueError, match="top_k=0"):
        _translate(adata, retrieval_model, top_k=0)
    assert "omnist_expression_to_image" not in adata.uns


def test_patch_retrieval_without_image(retrieval_model, load_her2st):
    adata = load_her2st("A1")
    before = (set(adata.obsm), set(adata.uns), set(adata.obs.columns))
    with pytest.raises(KeyError, match="uns\\['spatial'\\]|images"):
        _translate(adata, retrieval_model)
    assert (set(adata.obsm), set(adata.uns), set(adata.obs.columns)) == before


def test_patch_retrieval_slots_roundtrip(c4_matched, tmp_path):
    adata = c4_matched.copy()
    path = tmp_path / "c4.h5ad"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert back.obsm["patch"].equals(adata.obsm["patch"])
    np.testing.assert_allclose(back.obsm["patch_scores"].to_numpy(), adata.obsm["patch_scores"].to_numpy())
    np.testing.assert_array_equal(back.obs["patch_rank"], adata.obs["patch_rank"])
    both = ad.concat([adata, adata], index_unique="-")
    assert both.obsm["patch"].shape == (2 * adata.n_obs, 5)
    assert both.obs["patch_rank"].notna().all()


def test_patch_retrieval_after_checkpoint(retrieval_model, c4_matched, load_her2st, tmp_path):
    retrieval_model.save(tmp_path / "model")
    loaded = omnist.OmniST.load(tmp_path / "model")
    adata = load_her2st("C4")
    _translate(adata, loaded, key_added="patch", top_k=5)
    np.testing.assert_allclose(
        adata.obsm["patch_scores"].to_numpy(), c4_matched.obsm["patch_scores"].to_numpy(), atol=1e-5
    )


# Benchmark


def test_retrieval_scores_best_and_worst():
    assert retrieval_scores(np.ones(10), 10) == {"recall_1": 1.0, "recall_10": 1.0, "median_rank": 0.1}
    worst = retrieval_scores(np.full(20, 20), 20)
    assert worst == {"recall_1": 0.0, "recall_10": 0.0, "median_rank": 1.0}


def test_random_retrieval_uniform_ranks():
    n = 101
    expected = random_retrieval(n)
    measured = retrieval_scores(np.arange(1, n + 1), n)
    assert expected == pytest.approx(measured, abs=1e-9)


@pytest.fixture(scope="module")
def bench_results(her2st_dir, make_small_config):
    sections = load_image_sections(her2st_dir, ["C2", "C3"])
    return expression_to_image(sections, n_genes=50, epochs=1, config=make_small_config(), progress=False)


def test_retrieval_bench_layout(bench_results):
    assert set(bench_results) == {"omnist", "ridge", "random"}
    for method, record in bench_results.items():
        assert list(record["per_section"]) == ["C2", "C3"], method
        for metric in ("recall_1", "recall_10", "median_rank"):
            assert 0.0 <= record[metric] <= 1.0, (method, metric)


def test_retrieval_bench_ridge_above_chance(bench_results):
    # Expression predicts colour and texture features well enough to rank the own patch above chance.
    assert bench_results["ridge"]["recall_10"] > bench_results["random"]["recall_10"]
    assert bench_results["ridge"]["median_rank"] < bench_results["random"]["median_rank"]


@pytest.mark.slow
def test_cli_retrieval_bench_writes_results(her2st_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "expression-to-image", "--data-dir", str(her2st_dir), "--sections", "C2", "C3"]
    status = main([*argv, "--epochs", "1", "--genes", "20", "--out", str(out)])
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["expression_to_image"]
    assert set(results["expression_to_image"]) == {"omnist", "ridge", "random"}
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:4] == ["expression_to_image", "metric", "mean", "C2"]


def test_match_patches_chunks_agree_with_one_pass():
    from omnist.tl._translate import _match_patches

    generator = np.random.default_rng(0)
    queries, patches = generator.normal(size=(11, 6)), generator.normal(size=(11, 6))
    top, scores, ranks = _match_patches(queries, patches, 4, own=True, chunk=3)
    normal_q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    normal_p = patches / np.linalg.norm(patches, axis=1, keepdims=True)
    similarity = normal_q @ normal_p.T
    expected_top = np.argsort(-similarity, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(top, expected_top)
    np.testing.assert_allclose(scores, np.take_along_axis(similarity, expected_top, axis=1), rtol=1e-6)
    expected_ranks = 1 + (similarity > np.diag(similarity)[:, None]).sum(axis=1)
    np.testing.assert_array_equal(ranks, expected_ranks)


def test_patch_retrieval_copy_leaves_input(retrieval_model, load_her2st):
    adata = load_her2st("C4")
    before = (set(adata.obs.columns), set(adata.obsm), set(adata.uns))
    result = _translate(adata, retrieval_model, key_added="patch", copy=True)
    assert (set(adata.obs.columns), set(adata.obsm), set(adata.uns)) == before
    assert "patch" in result.obsm


def test_patch_retrieval_gallery_without_image(retrieval_model, load_her2st):
    query, gallery = load_her2st("C4"), load_her2st("A1")
    with pytest.raises(KeyError, match="gallery"):
        _translate(query, retrieval_model, gallery=gallery)
    assert "omnist_expression_to_image" not in query.uns
