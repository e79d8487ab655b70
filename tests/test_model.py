"""Tests of training, translation, checkpoints and the translation plot on her2st sections C2 and C3.

One small model is trained per module. Every section handed to a test is a copy, so tests stay independent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from anndata.tests.helpers import assert_equal

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import omnist  # noqa: E402
from omnist.model import OmniST  # noqa: E402

INSTRUCTION = "predict expression from H&E"
KEY = "omnist_image_to_expression"
PARAMS = {"instruction", "task", "similarity", "model_id", "omnist_version", "date"}
PARAPHRASES = ["infer gene expression from the histology image", "what is the transcriptome of each spot given the H&E"]
CHECKPOINT_FILES = ["config.json", "model.safetensors", "genes.json", "tasks.json"]
N_GENES = 50
# Translation tests use the first spots of C2: colour and features are standardised within the AnnData passed,
# so predictions compared across tests must come from the same spots.
N_SPOTS = 60
# Filters the anndata 0.12 FutureWarning about "/" in keys, which the cell type "CAFs MSC/iCAF-like" raises.
SLASH_WARNING = "ignore:Forward slashes:FutureWarning"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sections(load_her2st) -> dict[str, ad.AnnData]:
    """Sections C2 and C3 with their default patches."""
    adatas = {}
    for name in ("C2", "C3"):
        adata = load_her2st(name)
        omnist.pp.extract_patches(adata, progress=False)
        adatas[name] = adata
    return adatas


@pytest.fixture(scope="module")
def sections_before_training(sections) -> dict[str, ad.AnnData]:
    return {name: adata.copy() for name, adata in sections.items()}


@pytest.fixture(scope="module")
def model(sections, sections_before_training, make_small_config) -> OmniST:
    return omnist.tl.train(
        [sections["C2"], sections["C3"]],
        tasks=["image_to_expression"],
        n_genes=N_GENES,
        epochs=1,
        seed=0,
        progress=False,
        config=make_small_config(),
    )


@pytest.fixture
def c2(sections) -> ad.AnnData:
    return sections["C2"][:N_SPOTS].copy()


@pytest.fixture(scope="module")
def translated(sections, model) -> tuple[ad.AnnData, ad.AnnData]:
    """The first spots of C2 before and after ``translate`` with the default instruction."""
    before = sections["C2"][:N_SPOTS].copy()
    after = before.copy()
    omnist.tl.translate(after, INSTRUCTION, model=model, progress=False)
    return before, after


@pytest.fixture(scope="module")
def seed_models(sections, make_small_config) -> dict[str, OmniST]:
    """Three models on 40 spots of each section from one configuration: seed 0 twice and seed 1."""
    subsets = [sections["C2"][:40].copy(), sections["C3"][:40].copy()]
    config = make_small_config()
    models = {}
    for name, seed in (("first", 0), ("second", 0), ("other", 1)):
        models[name] = omnist.tl.train(
            subsets, tasks=["image_to_expression"], n_genes=10, epochs=1, seed=seed, progress=False, config=config
        )
    return models


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("checkpoint") / "model")


def _copy_checkpoint(checkpoint, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    for name in CHECKPOINT_FILES:
        (target / name).write_bytes((checkpoint / name).read_bytes())
    return target


def _state(model: OmniST) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in model.backbone.state_dict().items() if tensor.is_floating_point()}


def _keys(adata: ad.AnnData) -> dict[str, set[str]]:
    return {
        "obs": set(adata.obs.columns),
        "var": set(adata.var.columns),
        "obsm": set(adata.obsm),
        "varm": set(adata.varm),
        "obsp": set(adata.obsp),
        "layers": set(adata.layers),
        "uns": set(adata.uns),
    }


def _image_only(adata: ad.AnnData) -> ad.AnnData:
    """Return the spots, their positions and the H&E image of a section without any genes."""
    return ad.AnnData(obs=adata.obs[[]], obsm={"spatial": adata.obsm["spatial"]}, uns={"spatial": adata.uns["spatial"]})


# train


def test_train_returns_model(model):
    assert isinstance(model, OmniST)
    assert [task.name for task in model.tasks] == ["image_to_expression"]
    assert len(model.genes) == N_GENES
    assert len(set(model.genes)) == N_GENES
    assert model.config.patch_um == pytest.approx(150.0)
    assert len(model.history) == 1


def test_train_genes_measured_in_both_sections(model, sections):
    for adata in sections.values():
        assert set(model.genes) <= set(adata.var_names)


def test_train_leaves_inputs_unchanged(model, sections, sections_before_training):
    for name, adata in sections.items():
        assert_equal(adata, sections_before_training[name])


def test_train_same_seed_same_weights(seed_models):
    first, second = _state(seed_models["first"]), _state(seed_models["second"])
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_train_other_seed_other_weights(seed_models):
    first, other = _state(seed_models["first"]), _state(seed_models["other"])
    differing = [name for name in first if not torch.equal(first[name], other[name])]
    # Trained tensors depend on the initialisation seed, but frozen or constant ones may not.
    assert len(differing) > 0.9 * len(first)


def test_train_model_ids_unique(seed_models):
    assert seed_models["first"].config.model_id != seed_models["other"].config.model_id


def test_train_nan_counts_raises(sections):
    adata = sections["C2"].copy()
    adata.X = adata.X.copy()
    adata.X.data[5] = np.nan
    before = adata.copy()
    with pytest.raises(ValueError, match="1 NaN or infinite values"):
        omnist.tl.train(adata, tasks=["image_to_expression"], n_genes=10, epochs=1, progress=False)
    assert_equal(adata, before)


def test_train_negative_counts_raises(sections):
    adata = sections["C2"].copy()
    adata.X = adata.X.copy()
    adata.X.data[5] = -1.0
    with pytest.raises(ValueError, match="negative values"):
        omnist.tl.train(adata, tasks=["image_to_expression"], n_genes=10, epochs=1, progress=False)


def test_train_duplicated_var_names_raises(sections):
    adata = sections["C2"].copy()
    adata.var_names = [adata.var_names[0], *adata.var_names[:-1]]
    before = adata.copy()
    with pytest.raises(ValueError, match=r"adatas\[0\]\.var_names contains 1 duplicated names"):
        omnist.tl.train(adata, tasks=["image_to_expression"], n_genes=10, epochs=1, progress=False)
    assert_equal(adata, before)


def test_train_zero_spots_raises(sections):
    with pytest.raises(ValueError, match="no spots"):
        omnist.tl.train(sections["C2"][:0].copy(), tasks=["image_to_expression"], epochs=1, progress=False)


def test_train_empty_list_raises():
    with pytest.raises(ValueError, match="adatas is empty"):
        omnist.tl.train([], epochs=1, progress=False)


def test_train_unknown_gene_raises(sections):
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        omnist.tl.train(
            sections["C2"], tasks=["image_to_expression"], genes=["ERBB2", "NOT_A_GENE"], epochs=1, progress=False
        )


# translate: slots and parameters


def test_translate_writes_only_documented_keys(translated):
    before, after = translated
    keys_before, keys_after = _keys(before), _keys(after)
    assert keys_after["obsm"] - keys_before["obsm"] == {KEY}
    assert keys_after["uns"] - keys_before["uns"] == {KEY}
    for slot in ("obsm", "uns"):
        assert keys_before[slot] <= keys_after[slot], slot
    for slot in ("obs", "var", "varm", "obsp", "layers"):
        assert keys_after[slot] == keys_before[slot], slot


def test_translate_leaves_other_slots_unchanged(translated):
    before, after = translated
    stripped = after.copy()
    del stripped.obsm[KEY]
    del stripped.uns[KEY]
    assert_equal(stripped, before)


def test_translate_expression_frame(translated, model):
    _, after = translated
    frame = after.obsm[KEY]
    assert isinstance(frame, pd.DataFrame)
    assert frame.index.equals(after.obs_names)
    assert frame.columns.tolist() == model.genes
    assert frame.dtypes.map(pd.api.types.is_float_dtype).all()
    assert np.isfinite(frame.to_numpy()).all()


def test_translate_values_in_log1p_range(translated):
    _, after = translated
    values = after.obsm[KEY].to_numpy()
    # log1p(CP10k) lies in [0, log1p(1e4)] = [0, 9.21]. A decoder after one epoch stays near the training means.
    assert values.min() > -1.0
    assert values.max() < np.log1p(1e4)


def test_translate_params(translated, model):
    _, after = translated
    params = after.uns[KEY]["params"]
    assert set(params) == PARAMS
    assert params["instruction"] == INSTRUCTION
    assert params["task"] == "image_to_expression"
    assert params["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert params["model_id"] == model.config.model_id
    assert params["omnist_version"] == omnist.__version__


def test_translate_params_date(translated):
    _, after = translated
    date = datetime.fromisoformat(after.uns[KEY]["params"]["date"])
    assert date.tzinfo is not None
    assert timedelta(0) <= datetime.now(UTC) - date < timedelta(hours=1)


def test_translate_key_added(c2, model):
    omnist.tl.translate(c2, INSTRUCTION, model=model, key_added="he_prediction", progress=False)
    assert "he_prediction" in c2.obsm
    assert "he_prediction" in c2.uns
    assert KEY not in c2.obsm
    assert KEY not in c2.uns


def test_translate_inplace_returns_none(c2, model):
    assert omnist.tl.translate(c2, INSTRUCTION, model=model, progress=False) is None


def test_translate_copy_leaves_input(c2, model, translated):
    before = c2.copy()
    result = omnist.tl.translate(c2, INSTRUCTION, model=model, copy=True, progress=False)
    assert result is not c2
    assert_equal(c2, before)
    pd.testing.assert_frame_equal(result.obsm[KEY], translated[1].obsm[KEY])


# translate: instructions and genes


@pytest.mark.parametrize("instruction", PARAPHRASES)
def test_translate_paraphrase_same_task(c2, model, instruction):
    result = omnist.tl.translate(c2, instruction, model=model, copy=True, progress=False)
    assert result.uns[KEY]["params"]["task"] == "image_to_expression"
    assert result.uns[KEY]["params"]["instruction"] == instruction
    assert result.uns[KEY]["params"]["similarity"] >= omnist.tasks.MIN_SIMILARITY
    assert result.obsm[KEY].columns.tolist() == model.genes
    assert np.isfinite(result.obsm[KEY].to_numpy()).all()


def test_translate_unknown_instruction_raises(c2, model):
    before = c2.copy()
    with pytest.raises(ValueError, match=r"matches no task well.*Closest tasks: \w+ \(\d\.\d\d\)"):
        omnist.tl.translate(c2, "bake a chocolate cake", model=model, progress=False)
    assert_equal(c2, before)


def test_translate_instruction_for_untrained_task_raises(c2, model):
    instruction = "classify tissue regions from histology"
    assert omnist.tasks.resolve(instruction, model.text.embed).task.name != "image_to_expression"
    with pytest.raises(ValueError):
        omnist.tl.translate(c2, instruction, model=model, progress=False)


def test_translate_genes_from_instruction(c2, model):
    assert {"ERBB2", "ACTB"} <= set(model.genes)
    omnist.tl.translate(c2, "predict ERBB2 and ACTB from H&E", model=model, progress=False)
    assert c2.obsm[KEY].columns.tolist() == ["ERBB2", "ACTB"]
    assert np.isfinite(c2.obsm[KEY].to_numpy()).all()


def test_translate_genes_argument_matches_full(c2, model, translated):
    omnist.tl.translate(c2, INSTRUCTION, model=model, genes=["ACTB", "ERBB2"], progress=False)
    full = translated[1].obsm[KEY]
    assert c2.obsm[KEY].columns.tolist() == ["ACTB", "ERBB2"]
    np.testing.assert_allclose(c2.obsm[KEY].to_numpy(), full[["ACTB", "ERBB2"]].to_numpy(), rtol=1e-5, atol=1e-5)


def test_translate_unknown_gene_raises(c2, model):
    before = c2.copy()
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        omnist.tl.translate(c2, INSTRUCTION, model=model, genes=["ERBB2", "NOT_A_GENE"], progress=False)
    assert_equal(c2, before)


def test_translate_gene_columns_use_symbols(c2, model):
    result = omnist.tl.translate(c2, INSTRUCTION, model=model, genes=["erbb2"], copy=True, progress=False)
    assert result.obsm[KEY].columns.tolist() == ["ERBB2"]


# translate: inputs


def test_translate_uses_stored_patches(c2, model, translated):
    patches_only = ad.AnnData(
        X=c2.X, obs=c2.obs[[]], var=c2.var[[]], obsm={"omnist_patches": c2.obsm["omnist_patches"]}, uns={}
    )
    patches_only.uns["omnist"] = {"patches": dict(c2.uns["omnist"]["patches"])}
    omnist.tl.translate(patches_only, INSTRUCTION, model=model, progress=False)
    np.testing.assert_array_equal(patches_only.obsm[KEY].to_numpy(), translated[1].obsm[KEY].to_numpy())


def test_translate_cuts_missing_patches(c2, model, translated):
    del c2.obsm["omnist_patches"]
    del c2.uns["omnist"]
    omnist.tl.translate(c2, INSTRUCTION, model=model, progress=False)
    np.testing.assert_array_equal(c2.obsm[KEY].to_numpy(), translated[1].obsm[KEY].to_numpy())
    assert "omnist_patches" not in c2.obsm


def test_translate_without_image_raises(c2, model):
    del c2.obsm["omnist_patches"]
    del c2.uns["omnist"]
    del c2.uns["spatial"]
    before = c2.copy()
    with pytest.raises(KeyError, match=r"obsm\['omnist_patches'\].*uns\['spatial'\]"):
        omnist.tl.translate(c2, INSTRUCTION, model=model, progress=False)
    assert_equal(c2, before)


def test_translate_without_coordinates_raises(c2, model):
    del c2.obsm["omnist_patches"]
    del c2.uns["omnist"]
    del c2.obsm["spatial"]
    with pytest.raises(KeyError, match=r"obsm\['spatial'\]"):
        omnist.tl.translate(c2, INSTRUCTION, model=model, progress=False)


def test_translate_duplicated_var_names_raises(c2, model):
    c2.var_names = [c2.var_names[0], *c2.var_names[:-1]]
    before = c2.copy()
    with pytest.raises(ValueError, match="duplicated names"):
        omnist.tl.translate(c2, INSTRUCTION, model=model, progress=False)
    assert_equal(c2, before)


def test_translate_zero_spots_raises(c2, model):
    empty = c2[:0].copy()
    with pytest.raises(ValueError, match="no spots"):
        omnist.tl.translate(empty, INSTRUCTION, model=model, progress=False)
    assert KEY not in empty.obsm
    assert KEY not in empty.uns


def test_translate_image_only_section(c2, model, translated):
    image_only = _image_only(c2)
    omnist.tl.translate(image_only, INSTRUCTION, model=model, progress=False)
    np.testing.assert_array_equal(image_only.obsm[KEY].to_numpy(), translated[1].obsm[KEY].to_numpy())


@pytest.mark.filterwarnings(SLASH_WARNING)
def test_translate_h5ad_roundtrip(translated, tmp_path):
    _, after = translated
    after.write_h5ad(tmp_path / "c2.h5ad")
    loaded = ad.read_h5ad(tmp_path / "c2.h5ad")
    pd.testing.assert_frame_equal(loaded.obsm[KEY], after.obsm[KEY])
    assert loaded.uns[KEY]["params"] == after.uns[KEY]["params"]


# Checkpoints


def test_save_writes_files(checkpoint):
    assert sorted(path.name for path in checkpoint.iterdir()) == sorted(CHECKPOINT_FILES)


def test_load_same_predictions(checkpoint, model, c2):
    loaded = OmniST.load(checkpoint, device="cpu")
    expected = omnist.tl.translate(c2, INSTRUCTION, model=model, copy=True, progress=False)
    actual = omnist.tl.translate(c2, INSTRUCTION, model=loaded, copy=True, progress=False)
    np.testing.assert_array_equal(actual.obsm[KEY].to_numpy(), expected.obsm[KEY].to_numpy())
    assert actual.uns[KEY]["params"]["model_id"] == model.config.model_id


def test_load_same_model(checkpoint, model):
    loaded = OmniST.load(checkpoint, device="cpu")
    assert loaded.config == model.config
    assert loaded.genes == model.genes
    assert [task.name for task in loaded.tasks] == [task.name for task in model.tasks]
    assert loaded.history == model.history
    np.testing.assert_array_equal(loaded.vocabulary.mean, model.vocabulary.mean)
    np.testing.assert_array_equal(loaded.vocabulary.std, model.vocabulary.std)


def test_load_weights_equal(checkpoint, model):
    loaded = OmniST.load(checkpoint, device="cpu")
    expected = model.backbone.state_dict()
    actual = loaded.backbone.state_dict()
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name].cpu(), expected[name].cpu()), name


def test_load_other_format_version_raises(checkpoint, tmp_path):
    target = _copy_checkpoint(checkpoint, tmp_path)
    config = json.loads((target / "config.json").read_text())
    config["format_version"] += 1
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="format version"):
        OmniST.load(target, device="cpu")


def test_load_unknown_config_field_raises(checkpoint, tmp_path):
    target = _copy_checkpoint(checkpoint, tmp_path)
    config = json.loads((target / "config.json").read_text())
    config["colour"] = "blue"
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        OmniST.load(target, device="cpu")


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.999])
def test_load_truncated_weights_raises(checkpoint, tmp_path, fraction):
    target = _copy_checkpoint(checkpoint, tmp_path)
    weights = (target / "model.safetensors").read_bytes()
    (target / "model.safetensors").write_bytes(weights[: int(len(weights) * fraction)])
    with pytest.raises(ValueError, match="model.safetensors is corrupted"):
        OmniST.load(target, device="cpu")


def test_load_invalid_json_raises(checkpoint, tmp_path):
    target = _copy_checkpoint(checkpoint, tmp_path)
    (target / "genes.json").write_text('{"symbols": [')
    with pytest.raises(ValueError, match="is corrupted"):
        OmniST.load(target, device="cpu")


def test_load_vocabulary_mismatch_raises(checkpoint, tmp_path):
    target = _copy_checkpoint(checkpoint, tmp_path)
    genes = json.loads((target / "genes.json").read_text())
    genes = {name: values[:-1] for name, values in genes.items()}
    (target / "genes.json").write_text(json.dumps(genes))
    with pytest.raises(ValueError, match="do not fit the model"):
        OmniST.load(target, device="cpu")


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_load_missing_file_raises(checkpoint, tmp_path, name):
    target = _copy_checkpoint(checkpoint, tmp_path)
    (target / name).unlink()
    with pytest.raises(FileNotFoundError, match=name):
        OmniST.load(target, device="cpu")


def test_load_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an omnist checkpoint"):
        OmniST.load(tmp_path / "nothing_here", device="cpu")


# Plot


def test_plot_translation_titles(translated):
    _, after = translated
    figure = omnist.pl.translation(after, KEY, show=False)
    assert isinstance(figure, Figure)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    predicted = [title for title in titles if "predicted" in title]
    measured = [title for title in titles if "measured" in title]
    assert len(predicted) == 4
    assert len(measured) == 4
    assert all("r = " in title for title in predicted)


def test_plot_translation_named_genes(translated):
    _, after = translated
    figure = omnist.pl.translation(after, KEY, genes=["ERBB2"], show=False)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles[0] == "ERBB2 measured"
    assert titles[1].startswith("ERBB2 predicted (r = ")


def test_plot_translation_leaves_input(translated):
    _, after = translated
    before = after.copy()
    omnist.pl.translation(after, KEY, show=False)
    assert_equal(after, before)


def test_plot_translation_missing_key_raises(translated):
    _, after = translated
    with pytest.raises(KeyError, match="run omnist.tl.translate first"):
        omnist.pl.translation(after, "no_such_key", show=False)


def test_plot_translation_saves_file(translated, tmp_path):
    _, after = translated
    omnist.pl.translation(after, KEY, n_genes=1, show=False, save=tmp_path / "c2.png")
    assert (tmp_path / "c2.png").stat().st_size > 0


def test_plot_translation_single_gene_string(translated):
    _, after = translated
    figure = omnist.pl.translation(after, KEY, genes="ERBB2", show=False)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles[0] == "ERBB2 measured"
    assert len(titles) == 2


@pytest.mark.parametrize(("kwargs", "message"), [({"genes": []}, "genes is empty"), ({"n_genes": 0}, "n_genes=0")])
def test_plot_translation_no_genes_raises(translated, kwargs, message):
    _, after = translated
    with pytest.raises(ValueError, match=message):
        omnist.pl.translation(after, KEY, show=False, **kwargs)


def test_plot_translation_missing_image_raises(translated):
    _, after = translated
    adata = after.copy()
    library = next(iter(adata.uns["spatial"]))
    del adata.uns["spatial"][library]["images"]
    with pytest.raises(KeyError, match=r"\['images'\]\['hires'\] is missing .* or pass img_key=None"):
        omnist.pl.translation(adata, KEY, show=False)


def test_plot_translation_spots_without_uns_spatial(translated):
    """Without uns["spatial"], img_key=None draws spots about one spot pitch wide, not single pixels."""
    _, after = translated
    adata = after.copy()
    del adata.uns["spatial"]
    figure = omnist.pl.translation(adata, KEY, n_genes=1, img_key=None, show=False)
    paths = figure.axes[0].collections[0].get_paths()
    assert len(paths) == adata.n_obs
    coordinates = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    distances = np.linalg.norm(coordinates[:, None] - coordinates[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    pitch = np.median(distances.min(axis=1))
    assert 0.5 * pitch <= paths[0].get_extents().width <= 1.5 * pitch


def test_plot_translation_matches_gene_symbols(translated):
    """Measured genes are found through var["gene_symbol"] when var_names are other identifiers."""
    _, after = translated
    adata = after.copy()
    adata.var["gene_symbol"] = adata.var_names.astype(str)
    adata.var_names = [f"ID{index}" for index in range(adata.n_vars)]
    figure = omnist.pl.translation(adata, KEY, genes=["ERBB2"], show=False)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles[0] == "ERBB2 measured"
