"""Every core task through one backbone on real DLPFC and her2st sections, with small models."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

import omnist

SMALL = omnist.OmniSTConfig(d_model=32, n_layers=1, n_heads=2, image_width=8)
LAYERS = {"L1", "L2", "L3", "L4", "L5", "L6", "WM"}


def _dlpfc(data_dir, name: str, n_spots: int) -> ad.AnnData:
    return ad.read_h5ad(data_dir / "dlpfc" / f"{name}.h5ad")[:n_spots].copy()


@pytest.fixture(scope="module")
def dlpfc_model(data_dir):
    train = [_dlpfc(data_dir, name, 600) for name in ("151673", "151674")]
    for adata in train:
        omnist.pp.build_instructions(adata, label_keys=["layer"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return omnist.tl.train(train, epochs=2, n_genes=200, seed=0, config=SMALL, progress=False)


@pytest.fixture
def dlpfc_test(data_dir) -> ad.AnnData:
    return _dlpfc(data_dir, "151675", 400)


def _translate(adata, instruction, model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return omnist.tl.translate(adata, instruction, model=model, progress=False, **kwargs)


def test_build_instructions_table_columns(data_dir):
    adata = _dlpfc(data_dir, "151673", 200)
    omnist.pp.build_instructions(adata, label_keys=["layer"], n_paraphrases=3)
    table = adata.uns["omnist"]["instructions"]
    assert list(table.columns) == ["task", "instruction", "input", "output", "target"]
    assert {"expression_to_domain", "text_to_region", "region_to_text", "embed"} <= set(table["task"])


def test_build_instructions_skips_coarse_image(data_dir):
    adata = _dlpfc(data_dir, "151673", 200)
    omnist.pp.build_instructions(adata, label_keys=["layer"])
    assert "image_to_expression" not in set(adata.uns["omnist"]["instructions"]["task"])


def test_build_instructions_queries_expand_abbreviations(data_dir):
    adata = _dlpfc(data_dir, "151673", 600)
    omnist.pp.build_instructions(adata, label_keys=["layer"], n_paraphrases=6)
    table = adata.uns["omnist"]["instructions"]
    queries = table.loc[table["target"] == "obs:layer=WM", "instruction"]
    assert any("white matter" in text for text in queries)


def test_build_instructions_missing_key_raises(data_dir):
    adata = _dlpfc(data_dir, "151673", 50)
    with pytest.raises(KeyError, match="not_a_column"):
        omnist.pp.build_instructions(adata, label_keys=["not_a_column"])
    assert "omnist" not in adata.uns


def test_build_instructions_proportions_need_dataframe(data_dir):
    adata = _dlpfc(data_dir, "151673", 50)
    adata.obsm["props"] = np.ones((adata.n_obs, 3)) / 3
    with pytest.raises(ValueError, match="DataFrame"):
        omnist.pp.build_instructions(adata, proportion_keys=["props"])


def test_train_records_all_instructed_tasks(dlpfc_model):
    names = {task.name for task in dlpfc_model.tasks}
    assert names == {"expression_to_domain", "text_to_region", "region_to_text", "text_to_expression", "embed"}


def test_translate_layer_writes_labels_and_probabilities(dlpfc_model, dlpfc_test):
    _translate(dlpfc_test, "assign each spot to its cortical layer", dlpfc_model, key_added="pred_layer")
    assert isinstance(dlpfc_test.obs["pred_layer"].dtype, pd.CategoricalDtype)
    assert set(dlpfc_test.obs["pred_layer"].cat.categories) == LAYERS
    probabilities = dlpfc_test.obsm["pred_layer_probabilities"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert dlpfc_test.uns["pred_layer"]["params"]["task"] == "expression_to_domain"


def test_translate_retrieval_writes_float_score(dlpfc_model, dlpfc_test):
    _translate(dlpfc_test, "find white matter", dlpfc_model, key_added="wm_score")
    assert dlpfc_test.obs["wm_score"].dtype == np.float64
    assert np.isfinite(dlpfc_test.obs["wm_score"]).all()
    assert dlpfc_test.uns["wm_score"]["query"] == "white matter"
    assert dlpfc_test.uns["wm_score"]["params"]["task"] == "text_to_region"


def test_translate_region_to_text_ranks_candidates(dlpfc_model, dlpfc_test):
    _translate(dlpfc_test, "describe this region", dlpfc_model, key_added="described", groupby="layer")
    entry = dlpfc_test.uns["described"]["WM"]
    assert set(entry["texts"]) == LAYERS
    assert (np.diff(entry["scores"]) <= 0).all()
    assert entry["probabilities"].sum() == pytest.approx(1.0)
    assert entry["n_spots"] == int((dlpfc_test.obs["layer"] == "WM").sum())
    np.testing.assert_allclose(entry["scores"], np.sqrt(entry["probabilities"] * entry["enrichment"]))


def test_translate_region_to_text_needs_groupby(dlpfc_model, dlpfc_test):
    with pytest.raises(KeyError, match="groupby"):
        _translate(dlpfc_test, "describe this region", dlpfc_model)


def test_translate_zero_shot_labels(dlpfc_model, dlpfc_test):
    _translate(
        dlpfc_test,
        "assign each spot to its cortical layer",
        dlpfc_model,
        key_added="zs",
        labels=["white matter", "grey matter"],
    )
    assert set(dlpfc_test.obs["zs"].cat.categories) == {"white matter", "grey matter"}


def test_translate_few_vocabulary_genes_warn_once(dlpfc_model, dlpfc_test):
    """A section that measures a tenth of the model's genes draws one coverage warning per call."""
    measured = [gene for gene in dlpfc_test.var_names if gene in set(dlpfc_model.genes)][:20]
    subset = dlpfc_test[:, measured].copy()
    with pytest.warns(UserWarning, match="adata measures 20 of the model's 200 vocabulary genes") as record:
        omnist.tl.translate(subset, "find white matter", model=dlpfc_model, progress=False)
    assert len([item for item in record if "vocabulary genes" in str(item.message)]) == 1


def test_embed_feeds_scanpy_neighbors(dlpfc_model, dlpfc_test):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        omnist.tl.embed(dlpfc_test, model=dlpfc_model, progress=False)
    assert dlpfc_test.obsm["X_omnist"].shape == (dlpfc_test.n_obs, SMALL.d_model)
    sc.pp.neighbors(dlpfc_test, use_rep="X_omnist")
    assert "connectivities" in dlpfc_test.obsp


def test_slots_survive_h5ad_and_concat(dlpfc_model, dlpfc_test, tmp_path):
    _translate(dlpfc_test, "assign each spot to its cortical layer", dlpfc_model, key_added="pred_layer")
    _translate(dlpfc_test, "find white matter", dlpfc_model, key_added="wm_score")
    _translate(dlpfc_test, "describe this region", dlpfc_model, key_added="described", groupby="layer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        omnist.tl.embed(dlpfc_test, model=dlpfc_model, progress=False)
    dlpfc_test.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad")
    pd.testing.assert_series_equal(back.obs["pred_layer"], dlpfc_test.obs["pred_layer"])
    np.testing.assert_allclose(back.obs["wm_score"], dlpfc_test.obs["wm_score"])
    np.testing.assert_allclose(back.obsm["X_omnist"], dlpfc_test.obsm["X_omnist"])
    assert list(back.uns["described"]["WM"]["texts"]) == list(dlpfc_test.uns["described"]["WM"]["texts"])
    joined = ad.concat([dlpfc_test, back], index_unique="-", uns_merge="first")
    assert joined.obsm["pred_layer_probabilities"].shape == (2 * dlpfc_test.n_obs, len(LAYERS))
    assert joined.obsm["X_omnist"].shape[0] == 2 * dlpfc_test.n_obs


def test_checkpoint_restores_label_sets_and_tasks(dlpfc_model, dlpfc_test, tmp_path):
    dlpfc_model.save(tmp_path / "model")
    loaded = omnist.OmniST.load(tmp_path / "model")
    assert loaded.label_sets == dlpfc_model.label_sets
    first = _translate(dlpfc_test, "find white matter", dlpfc_model, copy=True)
    second = _translate(dlpfc_test, "find white matter", loaded, copy=True)
    np.testing.assert_array_equal(first.obs["omnist_text_to_region"], second.obs["omnist_text_to_region"])


def test_registered_task_comes_back_from_checkpoint(data_dir, tmp_path):
    omnist.tasks.register(
        "expression_to_region_name",
        ["name the anatomical region of each spot", "which brain region is this spot in"],
        inputs=["expression"],
        output="text",
        target="obs",
    )
    try:
        adata = _dlpfc(data_dir, "151673", 300)
        omnist.pp.build_instructions(adata, extra_tasks=["expression_to_region_name"], label_keys=["layer"])
        table = adata.uns["omnist"]["instructions"]
        assert set(table.loc[table["task"] == "expression_to_region_name", "target"]) == {"obs:layer"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = omnist.tl.train(adata, epochs=1, n_genes=100, config=SMALL, progress=False)
        model.save(tmp_path / "model")
    finally:
        omnist.tasks.unregister("expression_to_region_name")
    loaded = omnist.OmniST.load(tmp_path / "model")
    assert "expression_to_region_name" in {task.name for task in loaded.tasks}
    assert omnist.tasks.get("expression_to_region_name").inputs == ("expression",)
    _translate(adata, "which brain region is this spot in", loaded, key_added="region")
    assert adata.uns["region"]["params"]["task"] == "expression_to_region_name"
    omnist.tasks.unregister("expression_to_region_name")


@pytest.fixture(scope="module")
def her2st_model(data_dir):
    sections = []
    for name in ("C2", "C3"):
        adata = omnist.datasets.her2st(name, root=data_dir / "her2st")
        omnist.pp.build_instructions(adata, label_keys=["cluster_annotation"], proportion_keys=["proportions_major"])
        sections.append(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = omnist.tl.train(sections, epochs=1, n_genes=150, seed=0, config=SMALL, progress=False)
    return model, sections


def test_her2st_trains_image_and_expression_tasks(her2st_model):
    model, _ = her2st_model
    names = {task.name for task in model.tasks}
    assert {"image_to_expression", "image_to_domain", "expression_to_cell_type", "expression_to_domain"} <= names


def test_her2st_proportions_sum_to_one(her2st_model, data_dir):
    model, _ = her2st_model
    adata = omnist.datasets.her2st("C4", root=data_dir / "her2st")
    _translate(adata, "predict cell type proportions from expression", model, key_added="props")
    frame = adata.obsm["props"]
    assert list(frame.columns) == list(adata.obsm["proportions_major"].columns)
    np.testing.assert_allclose(frame.sum(axis=1), 1.0, rtol=1e-5)


def test_her2st_image_to_domain_labels(her2st_model, data_dir):
    model, sections = her2st_model
    adata = omnist.datasets.her2st("C4", root=data_dir / "her2st")
    _translate(adata, "classify tissue regions from histology", model, key_added="img_domain")
    assert adata.uns["img_domain"]["params"]["task"] == "image_to_domain"
    assert adata.obs["img_domain"].notna().all()


def test_translate_image_task_without_image_names_slot(her2st_model, data_dir):
    model, _ = her2st_model
    adata = omnist.datasets.her2st("A1", root=data_dir / "her2st")
    before = set(adata.obsm) | set(adata.uns)
    with pytest.raises(KeyError, match="uns\\['spatial'\\]|images"):
        _translate(adata, "predict expression from H&E", model)
    assert set(adata.obsm) | set(adata.uns) == before


def test_sections_with_different_panels_train_together(data_dir):
    first = omnist.datasets.her2st("A1", root=data_dir / "her2st")
    second = omnist.datasets.her2st("B1", root=data_dir / "her2st")
    second = second[:, second.var_names[: second.n_vars // 2]].copy()
    for adata in (first, second):
        omnist.pp.build_instructions(adata, label_keys=["pathology"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = omnist.tl.train([first, second], epochs=1, n_genes=100, config=SMALL, progress=False)
    assert len(model.genes) == 100


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda a: a.X.__setitem__((0, 0), np.nan), ValueError, "NaN"),
        (lambda a: setattr(a, "var_names", pd.Index(["G"] * a.n_vars)), ValueError, "duplicated"),
    ],
)
def test_train_bad_input_raises_and_keeps_input(data_dir, mutate, error, match):
    adata = _dlpfc(data_dir, "151673", 100)
    adata.X = adata.X.toarray()
    mutate(adata)
    omnist_before = "omnist" in adata.uns
    with pytest.raises(error, match=match):
        omnist.tl.train(adata, epochs=1, config=SMALL, progress=False)
    assert ("omnist" in adata.uns) == omnist_before


def test_translate_empty_adata_raises(dlpfc_model, dlpfc_test):
    with pytest.raises(ValueError, match="no spots"):
        omnist.tl.translate(dlpfc_test[:0].copy(), "find white matter", model=dlpfc_model)


def test_label_weights_favour_rare_classes():
    from omnist.tl._train import label_weights

    targets = np.array([0, 0, 0, 1, 3])
    weights = label_weights(targets, 4)
    assert weights[1] > weights[0]
    assert weights[3] == pytest.approx(weights[1])
    assert weights[2] == 0.0
    assert weights[targets].mean() == pytest.approx(1.0)


def test_label_weights_off(monkeypatch):
    import omnist.tl._train as train_module

    monkeypatch.setattr(train_module, "LABEL_BALANCE", 0)
    assert train_module.label_weights(np.array([0, 0, 1]), 2) is None


def test_build_instructions_extra_image_task_without_image(data_dir):
    adata = omnist.datasets.her2st("A1", root=data_dir / "her2st")
    with pytest.raises(ValueError, match="needs an H&E image"):
        omnist.pp.build_instructions(adata, extra_tasks=["expression_to_image"])
    assert "omnist" not in adata.uns


def test_build_instructions_extra_text_task_fills_query(data_dir):
    adata = omnist.datasets.her2st("A1", root=data_dir / "her2st")
    omnist.pp.build_instructions(adata, label_keys=["pathology"], extra_tasks=["text_to_expression"])
    rows = adata.uns["omnist"]["instructions"].query("task == 'text_to_expression'")
    assert rows["instruction"].str.contains("the described region").all()


def test_build_instructions_query_keeps_label_with_colon(data_dir):
    """A label that contains ": " itself, such as C2's "immune : B/plasma cells, APC", is queried whole."""
    adata = omnist.datasets.her2st("C2", root=data_dir / "her2st")
    omnist.pp.build_instructions(adata, label_keys=["cluster_annotation"])
    table = adata.uns["omnist"]["instructions"]
    rows = table[table["target"] == "obs:cluster_annotation=immune : B/plasma cells, APC"]
    assert len(rows)
    assert rows["instruction"].str.contains("immune : B/plasma cells, APC", regex=False).all()
