"""Tests of the explanation, retrieval, attribution and benchmark plots, and of omnist.tl.attribution.

Two small models are trained once per module: one on her2st section C2 (H&E image, expression clusters as
labels) and one on the squidpy Visium crop converted from a SpatialData object. Every test that draws gets a
copy of its AnnData and checks that the copy is unchanged afterwards.
"""

from __future__ import annotations

import json
import textwrap

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
from anndata.tests.helpers import assert_equal

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import omnist  # noqa: E402
from omnist.data.patches import spot_patches  # noqa: E402
from omnist.model import OmniST  # noqa: E402
from omnist.pl._explain import DIM_ALPHA, OUTLINE_PITCHES, TEXT_WIDTH_CHARACTERS  # noqa: E402

GROUPBY = "cluster_annotation"
GROUP = "cancer 1"
C2_TASKS = ["image_to_domain", "expression_to_domain", "region_to_text", "text_to_region", "image_to_expression"]
QUERY_KEY = "cancer_score"
QUERY = "find cancer 1"
IMAGE_INSTRUCTION = "classify tissue regions from histology"
EXPRESSION_INSTRUCTION = "label every spot with its cluster annotation from expression"
# Filters the anndata 0.12 FutureWarning about "/" in keys, which the cell type "CAFs MSC/iCAF-like" raises.
SLASH_WARNING = "ignore:Forward slashes:FutureWarning"

pytestmark = [
    pytest.mark.filterwarnings(SLASH_WARNING),
    pytest.mark.filterwarnings("ignore:The model has several label sets:UserWarning"),
]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run torch and numba on one thread each, because two threads made training about 10 times slower here."""
    import numba
    import torch

    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    numba.set_num_threads(numba_threads)
    torch.set_num_threads(torch_threads)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# her2st C2


@pytest.fixture(scope="module")
def c2_model(load_her2st, make_small_config) -> OmniST:
    adata = load_her2st("C2")
    omnist.pp.build_instructions(adata, label_keys=[GROUPBY])
    return omnist.tl.train(
        adata, tasks=C2_TASKS, n_genes=100, epochs=2, seed=0, progress=False, config=make_small_config()
    )


@pytest.fixture(scope="module")
def c2_done(load_her2st, c2_model) -> ad.AnnData:
    """C2 with explanations of its clusters and the retrieval scores of one query."""
    adata = load_her2st("C2")
    omnist.tl.explain(adata, groupby=GROUPBY, model=c2_model, composition_key="proportions_major")
    omnist.tl.translate(adata, QUERY, model=c2_model, key_added=QUERY_KEY, progress=False)
    return adata


@pytest.fixture
def c2(c2_done) -> ad.AnnData:
    return c2_done.copy()


def _record(adata: ad.AnnData, group: str = GROUP) -> dict:
    return adata.uns["omnist_explain"][group]


# spatial_explain


def test_spatial_explain_returns_figure(c2):
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 5


def test_spatial_explain_titles_carry_figures(c2):
    record = _record(c2)
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    tissue_ax, _, identity_ax, markers_ax, composition_ax = figure.axes
    top, score = record["identity"]["label"].iloc[0], record["identity"]["score"].iloc[0]
    uncertain = record["margin"] < c2.uns["omnist_explain"]["params"]["uncertain_margin"]
    assert tissue_ax.get_title() == f"{GROUP}: {top} (score {score:.3f}{', uncertain' if uncertain else ''})"
    assert identity_ax.get_title() == f"Identity (margin {record['margin']:.3f})"
    assert markers_ax.get_title() == "Marker genes (adjusted p < 0.05)"
    assert composition_ax.get_title() == "Composition\nobsm['proportions_major']"
    assert figure.get_suptitle() == f"Region {GROUP} of {GROUPBY} ({record['n_spots']} spots)"


def test_spatial_explain_text_panel(c2):
    record = _record(c2)
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    texts = [text.get_text() for text in figure.axes[1].texts]
    assert texts == [textwrap.fill(record["text"], width=TEXT_WIDTH_CHARACTERS)]


def test_spatial_explain_evidence_bars(c2):
    record = _record(c2)
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False, n_cell_types=5)
    _, _, identity_ax, markers_ax, composition_ax = figure.axes
    # Expression and H&E-only scores side by side: the C2 model learned image_to_domain.
    assert "image_identity" in record
    assert len(identity_ax.patches) == 2 * len(record["identity"])
    heights = [bar.get_width() for bar in markers_ax.patches]
    np.testing.assert_allclose(heights, record["markers"]["score"])
    assert [label.get_text() for label in markers_ax.get_yticklabels()] == list(record["markers"]["gene"])
    widths = [bar.get_width() for bar in composition_ax.patches]
    np.testing.assert_allclose(widths, record["composition"]["fraction"].head(5))


def test_spatial_explain_draws_image_and_outline(c2):
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    tissue_ax = figure.axes[0]
    hires = c2.uns["spatial"]["C2"]["images"]["hires"]
    assert len(tissue_ax.images) == 2
    np.testing.assert_array_equal(tissue_ax.images[0].get_array(), hires)
    assert any(isinstance(artist, ContourSet) for artist in tissue_ax.get_children())


def test_spatial_explain_dims_outside_region(c2):
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    veil = np.asarray(figure.axes[0].images[1].get_array())
    scale = c2.uns["spatial"]["C2"]["scalefactors"]["tissue_hires_scalef"]
    centres = np.round(c2.obsm["spatial"] * scale).astype(int)
    inside = (c2.obs[GROUPBY] == GROUP).to_numpy()
    for x, y in centres[inside]:
        assert veil[y, x, 3] == 0.0
    spacing = np.median(np.diff(np.unique(centres[:, 0])))
    far = [
        (x, y)
        for x, y in centres[~inside]
        if np.min(np.hypot(*(centres[inside] - (x, y)).T)) > 2 * OUTLINE_PITCHES * spacing + 2
    ]
    assert far
    for x, y in far:
        assert veil[y, x, 3] == pytest.approx(DIM_ALPHA)


def test_spatial_explain_leaves_adata_unchanged(c2):
    before = c2.copy()
    omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    assert_equal(c2, before)


def test_spatial_explain_ax_returns_axes(c2):
    _, ax = plt.subplots()
    returned = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, ax=ax, show=False)
    assert returned is ax
    assert len(ax.images) == 2


def test_spatial_explain_show_returns_none(c2):
    assert omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP) is None


def test_spatial_explain_spots_without_image(c2):
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, img_key=None, show=False)
    tissue_ax = figure.axes[0]
    assert not tissue_ax.images
    n_spots = sum(len(collection.get_paths()) for collection in tissue_ax.collections)
    assert n_spots == c2.n_obs


def test_spatial_explain_missing_image_raises(c2):
    del c2.uns["spatial"]["C2"]["images"]
    with pytest.raises(KeyError, match=r"uns\['spatial'\]\['C2'\]\['images'\]\['hires'\]"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)


def test_spatial_explain_crop_coord(c2):
    scale = c2.uns["spatial"]["C2"]["scalefactors"]["tissue_hires_scalef"]
    crop = (2000, 6000, 3000, 7000)
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, crop_coord=crop, show=False)
    np.testing.assert_allclose(figure.axes[0].get_xlim(), (crop[0] * scale, crop[1] * scale))
    np.testing.assert_allclose(figure.axes[0].get_ylim(), (crop[3] * scale, crop[2] * scale))


def test_spatial_explain_palette(c2):
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, palette={GROUP: "#00ff00"}, show=False)
    contour = next(artist for artist in figure.axes[0].get_children() if isinstance(artist, ContourSet))
    np.testing.assert_allclose(contour.get_edgecolor()[0], to_rgba("#00ff00"))


def test_spatial_explain_stored_colours(c2):
    categories = list(c2.obs[GROUPBY].astype("category").cat.categories)
    c2.uns[f"{GROUPBY}_colors"] = ["#0000ff"] * len(categories)
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    contour = next(artist for artist in figure.axes[0].get_children() if isinstance(artist, ContourSet))
    np.testing.assert_allclose(contour.get_edgecolor()[0], to_rgba("#0000ff"))


def test_spatial_explain_unknown_group_raises(c2):
    with pytest.raises(KeyError, match="cancer 9.*explained regions"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group="cancer 9", show=False)


def test_spatial_explain_other_groupby_raises(c2):
    with pytest.raises(ValueError, match="cluster_annotation"):
        omnist.pl.spatial_explain(c2, groupby="cluster", group=GROUP, show=False)


def test_spatial_explain_missing_key_raises(c2):
    with pytest.raises(KeyError, match="omnist.tl.explain"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, key="nothing", show=False)


def test_spatial_explain_uncertain_title(c2):
    c2.uns["omnist_explain"]["params"]["uncertain_margin"] = np.inf
    figure = omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)
    assert figure.axes[0].get_title().endswith(", uncertain)")


def test_spatial_explain_slash_region_after_h5ad(c2, tmp_path):
    """C2's cluster names contain "/", which h5ad keys cannot hold; every region survives the round trip."""
    slashed = [name for name in c2.uns["omnist_explain"]["params"]["groups"] if "/" in name]
    assert slashed
    path = tmp_path / "c2.h5ad"
    c2.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert set(back.uns["omnist_explain"]) == set(c2.uns["omnist_explain"])
    for name in slashed:
        figure = omnist.pl.spatial_explain(back, groupby=GROUPBY, group=name, show=False)
        assert figure.get_suptitle().startswith(f"Region {name} of {GROUPBY}")
        assert figure.axes[1].texts[0].get_text().replace("\n", " ").startswith(f"Region {name} (")


def test_spatial_explain_empty_palette_raises(c2):
    with pytest.raises(ValueError, match="palette is empty"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, palette=[], show=False)


def test_spatial_explain_short_crop_coord_raises(c2):
    with pytest.raises(ValueError, match=r"Invalid crop_coord=\(0, 10, 0\): pass four values"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, crop_coord=(0, 10, 0), show=False)


def test_spatial_explain_stale_region_raises(c2):
    c2.obs[GROUPBY] = c2.obs[GROUPBY].cat.rename_categories({GROUP: "renamed"})
    with pytest.raises(ValueError, match=f"Region '{GROUP}' has no spots .* rerun omnist.tl.explain"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)


def test_spatial_explain_changed_region_warns(c2):
    c2.obs[GROUPBY] = c2.obs[GROUPBY].astype(str)
    c2.obs.iloc[0, c2.obs.columns.get_loc(GROUPBY)] = GROUP if c2.obs[GROUPBY].iloc[0] != GROUP else "cancer 2"
    with pytest.warns(UserWarning, match=f"Region '{GROUP}' has .* spots .* but was explained with"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False)


def test_spatial_explain_translate_key_raises(c2):
    c2.uns["described"] = {GROUP: {"texts": np.array(["cancer 1"])}, "params": {}}
    with pytest.raises(KeyError, match=r"adata.uns\['described'\] has no omnist.tl.explain results"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, key="described", show=False)


@pytest.mark.parametrize("value", [0, 2.5])
def test_spatial_explain_invalid_n_cell_types_raises(c2, value):
    with pytest.raises(ValueError, match=f"Invalid n_cell_types={value}"):
        omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, n_cell_types=value, show=False)


def test_spatial_explain_saves_file(c2, tmp_path):
    path = tmp_path / "explain.png"
    omnist.pl.spatial_explain(c2, groupby=GROUPBY, group=GROUP, show=False, save=path)
    assert path.stat().st_size > 0


# retrieval


def _top(adata: ad.AnnData, k: int) -> np.ndarray:
    scores = adata.obs[QUERY_KEY].to_numpy()
    return np.argsort(-scores, kind="stable")[:k]


def test_retrieval_returns_figure(c2):
    figure = omnist.pl.retrieval(c2, QUERY_KEY, top_k=6, show=False)
    assert isinstance(figure, Figure)
    # Tissue, its colour bar and one panel per patch.
    assert len(figure.axes) == 2 + 6


def test_retrieval_titles_carry_scores(c2):
    figure = omnist.pl.retrieval(c2, QUERY_KEY, top_k=4, show=False)
    scores = c2.obs[QUERY_KEY].to_numpy()
    top = _top(c2, 4)
    titles = [ax.get_title() for ax in figure.axes[2:]]
    expected = [f"#{rank} {c2.obs_names[i]}\nscore {scores[i]:.3f}" for rank, i in enumerate(top, start=1)]
    assert titles == expected
    query = c2.uns[QUERY_KEY]["query"]
    assert figure.axes[0].get_title() == f"Query: {query} (max {scores.max():.3f})"


def test_retrieval_scores_drawn_per_spot(c2):
    figure = omnist.pl.retrieval(c2, QUERY_KEY, top_k=3, show=False)
    collection = figure.axes[0].collections[0]
    np.testing.assert_allclose(collection.get_array(), c2.obs[QUERY_KEY].to_numpy())


def test_retrieval_cuts_patches_in_memory(c2):
    figure = omnist.pl.retrieval(c2, QUERY_KEY, top_k=2, show=False)
    expected, _ = spot_patches(c2[_top(c2, 2)].copy(), progress=False)
    for ax, patch in zip(figure.axes[2:], expected, strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), patch)
    assert "omnist_patches" not in c2.obsm


def test_retrieval_uses_stored_patches(c2):
    omnist.pp.extract_patches(c2, progress=False)
    figure = omnist.pl.retrieval(c2, QUERY_KEY, top_k=3, show=False)
    for ax, index in zip(figure.axes[2:], _top(c2, 3), strict=True):
        np.testing.assert_array_equal(ax.images[0].get_array(), c2.obsm["omnist_patches"][index])


def test_retrieval_leaves_adata_unchanged(c2):
    before = c2.copy()
    omnist.pl.retrieval(c2, QUERY_KEY, show=False)
    assert_equal(c2, before)


def test_retrieval_ax_returns_axes(c2):
    _, ax = plt.subplots()
    assert omnist.pl.retrieval(c2, QUERY_KEY, ax=ax, show=False) is ax


def test_retrieval_section_without_image_raises(load_her2st):
    a1 = load_her2st("A1")
    a1.obs["score"] = np.linspace(0.0, 1.0, a1.n_obs)
    with pytest.raises(KeyError, match=r"uns\['spatial'\]\['A1'\]\['images'\]"):
        omnist.pl.retrieval(a1, "score", show=False)
    with pytest.raises(KeyError, match=r"uns\['spatial'\]\['A1'\]\['images'\]"):
        omnist.pl.retrieval(a1, "score", img_key=None, show=False)


def test_retrieval_missing_key_raises(c2):
    with pytest.raises(KeyError, match="find"):
        omnist.pl.retrieval(c2, "no_scores", show=False)


def test_retrieval_categorical_key_raises(c2):
    with pytest.raises(ValueError, match="numeric"):
        omnist.pl.retrieval(c2, GROUPBY, show=False)


def test_retrieval_fractional_top_k_raises(c2):
    with pytest.raises(ValueError, match=r"Invalid top_k=2.5: pass an integer of at least 1"):
        omnist.pl.retrieval(c2, QUERY_KEY, top_k=2.5, show=False)


def test_retrieval_invalid_patches_raise(c2):
    with pytest.raises(ValueError, match=r"adata.obsm\['spatial'\] has shape .* not \(spots, height, width, 3\)"):
        omnist.pl.retrieval(c2, QUERY_KEY, patches_key="spatial", show=False)


def test_retrieval_zero_top_k_raises(c2):
    with pytest.raises(ValueError, match="top_k"):
        omnist.pl.retrieval(c2, QUERY_KEY, top_k=0, show=False)


# attribution: computation


def test_attribution_image_task(c2, c2_model):
    result = omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=5, n_steps=64)
    size = c2_model.config.patch_px
    assert result.task == "image_to_domain"
    assert result.patch.shape == (size, size, 3)
    assert result.patch.dtype == np.uint8
    assert result.image.shape == (size, size)
    assert result.genes is None
    assert result.target in c2_model.label_sets[f"obs:{GROUPBY}"]["values"]
    assert result.spot == c2.obs_names[5]


def test_attribution_image_completeness(c2, c2_model):
    """Integrated gradients sum to the output difference between the input and the baseline."""
    result = omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=5, n_steps=64)
    difference = result.score - result.baseline_score
    assert result.image.sum() == pytest.approx(difference, abs=0.01 * abs(difference) + 1e-8)


def test_attribution_expression_task(c2, c2_model):
    result = omnist.tl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot="17x20", n_steps=64)
    assert result.task == "expression_to_domain"
    assert result.image is None
    assert set(result.genes.index) <= set(c2_model.genes)
    assert set(result.genes.index) <= set(c2.var_names)
    magnitudes = np.abs(result.genes.to_numpy())
    assert np.all(np.diff(magnitudes) <= 0)


def test_attribution_expression_completeness(c2, c2_model):
    result = omnist.tl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=3, n_steps=128)
    difference = result.score - result.baseline_score
    assert result.genes.sum() == pytest.approx(difference, abs=0.01 * abs(difference) + 1e-5)
    assert abs(result.delta) <= 0.01 * abs(difference) + 1e-5


def test_attribution_expression_output(c2, c2_model):
    gene = c2_model.genes[0]
    result = omnist.tl.attribution(c2, model=c2_model, instruction="predict expression from H&E", spot=0, target=gene)
    assert result.task == "image_to_expression"
    assert result.target == gene
    assert result.image.shape == (c2_model.config.patch_px,) * 2


def test_attribution_target_label(c2, c2_model):
    label = c2_model.label_sets[f"obs:{GROUPBY}"]["values"][-1]
    result = omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=0, target=label)
    assert result.target == label


def test_attribution_spot_name_equals_position(c2, c2_model):
    by_position = omnist.tl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=4)
    by_name = omnist.tl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=c2.obs_names[4])
    pd.testing.assert_series_equal(by_position.genes, by_name.genes)


def test_attribution_leaves_adata_unchanged(c2, c2_model):
    before = c2.copy()
    omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=0, n_steps=4)
    assert_equal(c2, before)


def test_attribution_unknown_spot_raises(c2, c2_model):
    with pytest.raises(KeyError, match="99x99"):
        omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot="99x99")
    with pytest.raises(KeyError, match="out of range"):
        omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=c2.n_obs)


def test_attribution_unknown_target_raises(c2, c2_model):
    with pytest.raises(KeyError, match="not a candidate"):
        omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=0, target="bone")


def test_attribution_zero_steps_raises(c2, c2_model):
    with pytest.raises(ValueError, match="n_steps"):
        omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=0, n_steps=0)


# attribution: plot


def test_plot_attribution_image(c2, c2_model):
    figure = omnist.pl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=5, show=False)
    assert isinstance(figure, Figure)
    patch_ax, map_ax, overlay_ax = figure.axes[:3]
    assert patch_ax.get_title() == "H&E patch"
    assert map_ax.get_title().startswith("pixel attribution (sum ")
    assert len(overlay_ax.images) == 2
    title = figure.get_suptitle()
    assert title.startswith("image_to_domain: ")
    assert "score " in title
    assert "baseline " in title
    assert "integration error " in title


def test_plot_attribution_genes(c2, c2_model):
    figure = omnist.pl.attribution(
        c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=5, n_genes=7, show=False
    )
    bars_ax = figure.axes[0]
    assert len(bars_ax.patches) == 7
    assert bars_ax.get_title().startswith("expression attribution (all genes sum to ")


def test_attribution_fractional_spot_raises(c2, c2_model):
    with pytest.raises(ValueError, match=r"Invalid spot=3.7: pass an obs name \(str\) or an integer position"):
        omnist.tl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=3.7)


def test_plot_attribution_single_gene_string(c2, c2_model):
    """genes="X" draws gene X, not one bar per character."""
    gene = omnist.tl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=5).genes.index[0]
    figure = omnist.pl.attribution(
        c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=5, genes=gene, show=False
    )
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == [gene]


def test_plot_attribution_zero_genes_raises(c2, c2_model):
    with pytest.raises(ValueError, match="Invalid n_genes=0"):
        omnist.pl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=5, n_genes=0, show=False)


def test_plot_attribution_named_genes(c2, c2_model):
    result = omnist.tl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=5)
    genes = list(result.genes.index[[2, 0]])
    figure = omnist.pl.attribution(
        c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=5, genes=genes, show=False
    )
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == genes
    np.testing.assert_allclose([bar.get_width() for bar in figure.axes[0].patches], result.genes[genes], rtol=1e-5)


def test_plot_attribution_unknown_gene_raises(c2, c2_model):
    with pytest.raises(KeyError, match="NOT_A_GENE"):
        omnist.pl.attribution(
            c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=5, genes=["NOT_A_GENE"], show=False
        )


def test_plot_attribution_ax_returns_axes(c2, c2_model):
    _, ax = plt.subplots()
    returned = omnist.pl.attribution(c2, model=c2_model, instruction=IMAGE_INSTRUCTION, spot=1, ax=ax, show=False)
    assert returned is ax
    assert len(ax.images) == 2


def test_plot_attribution_leaves_adata_unchanged(c2, c2_model):
    before = c2.copy()
    omnist.pl.attribution(c2, model=c2_model, instruction=EXPRESSION_INSTRUCTION, spot=1, show=False)
    assert_equal(c2, before)


# benchmark


RESULTS = {
    "image_to_expression": {
        "omnist": {"mean_pearson": 0.21, "per_section": {"C2": 0.20, "C3": 0.22}},
        "ridge": {"mean_pearson": 0.15, "per_section": {"C2": 0.14, "C3": 0.16}},
        "mean": {"mean_pearson": 0.0, "per_section": {"C2": 0.0, "C3": 0.0}},
    },
    "expression_to_domain": {
        "omnist": {"macro_f1": 0.41, "accuracy": 0.62, "per_section": {"F1": {"macro_f1": 0.41, "accuracy": 0.62}}},
        "logreg_pca": {"macro_f1": 0.35, "accuracy": None, "per_section": {"F1": {"macro_f1": 0.35}}},
    },
}


def test_benchmark_grouped_bars(tmp_path):
    ax = omnist.pl.benchmark(RESULTS, show=False)
    assert isinstance(ax, Axes)
    assert len(ax.patches) == 5
    heights = sorted(round(bar.get_height(), 3) for bar in ax.patches)
    assert heights == [0.0, 0.15, 0.21, 0.35, 0.41]
    ticks = [label.get_text() for label in ax.get_xticklabels()]
    assert ticks == ["image_to_expression\n(mean_pearson)", "expression_to_domain\n(macro_f1)"]


def test_benchmark_value_labels():
    ax = omnist.pl.benchmark(RESULTS, show=False)
    labels = sorted(text.get_text() for text in ax.texts)
    assert labels == ["0.000", "0.150", "0.210", "0.350", "0.410"]


def test_benchmark_baselines_in_legend():
    ax = omnist.pl.benchmark(RESULTS, show=False)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["omnist", "ridge (baseline)", "mean (baseline)", "logreg_pca (baseline)"]


def test_benchmark_per_section_dots():
    ax = omnist.pl.benchmark(RESULTS, show=False)
    dots = np.concatenate([collection.get_offsets()[:, 1] for collection in ax.collections])
    assert sorted(np.round(dots, 3)) == sorted([0.20, 0.22, 0.14, 0.16, 0.0, 0.0, 0.41, 0.35])


def test_benchmark_metric_missing_value():
    ax = omnist.pl.benchmark(RESULTS, metric="accuracy", show=False)
    labels = [text.get_text() for text in ax.texts]
    assert labels == ["0.620", "n/a"]
    assert ax.get_title() == "Benchmark: accuracy"


def test_benchmark_reads_results_json(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(RESULTS))
    ax = omnist.pl.benchmark(path, show=False)
    assert len(ax.patches) == 5


def test_benchmark_skips_other_entries():
    ax = omnist.pl.benchmark({**RESULTS, "version": "0.1.0"}, show=False)
    assert len(ax.patches) == 5


def test_benchmark_unknown_metric_raises():
    with pytest.raises(KeyError, match="auroc.*macro_f1"):
        omnist.pl.benchmark(RESULTS, metric="auroc", show=False)


def test_benchmark_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        omnist.pl.benchmark(tmp_path / "results.json", show=False)


def test_benchmark_invalid_layout_raises():
    with pytest.raises(ValueError, match="layout"):
        omnist.pl.benchmark({"image_to_expression": [0.2]}, show=False)


def test_benchmark_saves_file(tmp_path):
    path = tmp_path / "bench.png"
    omnist.pl.benchmark(RESULTS, show=False, save=path)
    assert path.stat().st_size > 0


# SpatialData


@pytest.fixture(scope="module")
def crop_done(crop_spatialdata, make_small_config) -> tuple[ad.AnnData, OmniST]:
    sdata = crop_spatialdata()
    adata = omnist.datasets.from_spatialdata(sdata, "table", "he", spot_diameter_um=55.0)
    training = adata.copy()
    omnist.pp.build_instructions(training, label_keys=["leiden"])
    model = omnist.tl.train(
        training,
        tasks=["region_to_text", "expression_to_domain", "image_to_domain", "text_to_region", "embed"],
        n_genes=100,
        epochs=2,
        seed=0,
        progress=False,
        config=make_small_config(),
    )
    omnist.tl.explain(adata, groupby="leiden", model=model)
    omnist.tl.translate(adata, "find 2", model=model, key_added="leiden_2", progress=False)
    return adata, model


def test_spatialdata_spatial_explain(crop_done):
    adata = crop_done[0].copy()
    before = adata.copy()
    figure = omnist.pl.spatial_explain(adata, groupby="leiden", group="2", show=False)
    tissue_ax = figure.axes[0]
    np.testing.assert_array_equal(tissue_ax.images[0].get_array(), adata.uns["spatial"]["he"]["images"]["hires"])
    assert tissue_ax.get_title().startswith("2: ")
    assert_equal(adata, before)


def test_spatialdata_retrieval(crop_done):
    adata = crop_done[0].copy()
    figure = omnist.pl.retrieval(adata, "leiden_2", top_k=3, show=False)
    assert len(figure.axes) == 5
    assert figure.axes[0].get_title().startswith("Query: 2 (max ")


def test_spatialdata_attribution(crop_done):
    adata, model = crop_done
    adata = adata.copy()
    figure = omnist.pl.attribution(adata, model=model, instruction=IMAGE_INSTRUCTION, spot=0, show=False)
    assert figure.get_suptitle().startswith("image_to_domain: ")


def test_attribution_embedding_task_raises(crop_done):
    adata, model = crop_done
    with pytest.raises(ValueError, match="embedding"):
        omnist.tl.attribution(adata.copy(), model=model, instruction="embed each spot", spot=0)


def test_benchmark_numpy_values():
    """Values written with numpy types (np.float32, np.int64) are metrics like Python floats."""
    results = {"task": {"omnist": {"m": np.float32(0.5)}, "ridge": {"m": np.int64(0)}}}
    ax = omnist.pl.benchmark(results, show=False)
    assert sorted(text.get_text() for text in ax.texts) == ["0.000", "0.500"]


def test_benchmark_variants_not_baselines():
    results = {"task": {"omnist": {"m": 0.5}, "omnist_probability": {"m": 0.4}, "majority": {"m": 0.3}}}
    ax = omnist.pl.benchmark(results, show=False)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["omnist", "omnist_probability", "majority (baseline)"]


def test_benchmark_integer_method_keys():
    ax = omnist.pl.benchmark({"task": {"omnist": {"m": 0.5}, 1: {"m": 0.3}}}, show=False)
    assert len(ax.patches) == 2


@pytest.mark.parametrize(
    ("text", "message"), [("[1, 2]", "hold a list, not a mapping"), ("{not json", "are not valid JSON")]
)
def test_benchmark_invalid_file_raises(tmp_path, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"Benchmark results .*results.json {message}"):
        omnist.pl.benchmark(path, show=False)


def test_benchmark_per_section_list_raises():
    with pytest.raises(ValueError, match="per_section is a list"):
        omnist.pl.benchmark({"task": {"omnist": {"m": 0.5, "per_section": [0.4, 0.6]}}}, show=False)


def test_benchmark_list_raises():
    with pytest.raises(TypeError, match="results is a list: pass the"):
        omnist.pl.benchmark([1, 2], show=False)
