"""Tests of omnist.tl.rank_regions, the region identity ranking that explain and translate share, and of the
region names and uns keys both use."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from omnist.data.labels import label_query
from omnist.tl import rank_regions
from omnist.tl._regions import region_codes, region_key

LABELS = ["invasive cancer", "connective tissue", "immune infiltrate"]


def _section() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A section whose classifier calls every spot mostly cancer, as on an unfamiliar patient.

    Spots 0-59 are cancer, 60-89 connective tissue and 90-99 immune infiltrate; the connective and immune
    spots raise their own label's probability but never above cancer's.
    """
    probabilities = np.tile([0.80, 0.15, 0.05], (100, 1))
    probabilities[60:90] = [0.55, 0.40, 0.05]
    probabilities[90:] = [0.50, 0.20, 0.30]
    masks = {
        "cancer": np.arange(100) < 60,
        "stroma": (np.arange(100) >= 60) & (np.arange(100) < 90),
        "immune": np.arange(100) >= 90,
    }
    return probabilities, masks


def test_rank_regions_columns_and_definitions():
    probabilities, masks = _section()
    rankings = rank_regions(probabilities, masks, LABELS)
    assert list(rankings) == ["cancer", "stroma", "immune"]
    prevalence = probabilities.mean(axis=0)
    for name, ranking in rankings.items():
        assert list(ranking.columns) == ["label", "score", "probability", "enrichment"]
        assert np.all(np.diff(ranking["score"].to_numpy()) <= 0)
        expected = probabilities[masks[name]].mean(axis=0)
        order = [LABELS.index(label) for label in ranking["label"]]
        np.testing.assert_allclose(ranking["probability"], expected[order])
        np.testing.assert_allclose(ranking["enrichment"], expected[order] / prevalence[order])
        np.testing.assert_allclose(ranking["score"], np.sqrt(ranking["probability"] * ranking["enrichment"]))


def test_rank_regions_majority_bias():
    probabilities, masks = _section()
    rankings = rank_regions(probabilities, masks, LABELS)
    assert rankings["cancer"]["label"].iloc[0] == "invasive cancer"
    assert rankings["stroma"]["label"].iloc[0] == "connective tissue"
    assert rankings["immune"]["label"].iloc[0] == "immune infiltrate"
    # The mean probability alone would name all three regions cancer.
    for name in masks:
        assert probabilities[masks[name]].mean(axis=0).argmax() == 0


def test_rank_regions_small_enrichment_large_region():
    """A large region where a rare label rises slightly keeps its dominant label."""
    probabilities = np.tile([0.90, 0.08, 0.02], (100, 1))
    probabilities[:80] = [0.88, 0.08, 0.04]
    ranking = rank_regions(probabilities, {"large": np.arange(100) < 80}, LABELS)["large"]
    assert ranking["label"].iloc[0] == "invasive cancer"
    assert ranking.set_index("label").loc["immune infiltrate", "enrichment"] > 1.0


def test_rank_regions_whole_section():
    probabilities, _ = _section()
    ranking = rank_regions(probabilities, {"all": np.ones(100, dtype=bool)}, LABELS)["all"]
    assert list(ranking["label"]) == ["invasive cancer", "connective tissue", "immune infiltrate"]
    np.testing.assert_allclose(ranking["enrichment"], 1.0)


def test_rank_regions_column_count_mismatch():
    probabilities, masks = _section()
    message = r"Invalid probabilities of shape \(100, 3\): expected one column per label \(2\)"
    with pytest.raises(ValueError, match=message):
        rank_regions(probabilities, masks, LABELS[:2])


def test_rank_regions_empty_region():
    probabilities, _ = _section()
    with pytest.raises(ValueError, match="Region 'none' has no spots: pass masks that select at least one spot"):
        rank_regions(probabilities, {"none": np.zeros(100, dtype=bool)}, LABELS)


def test_rank_regions_exponent_zero():
    probabilities, masks = _section()
    rankings = rank_regions(probabilities, masks, LABELS, prevalence_exponent=0.0)
    for ranking in rankings.values():
        assert ranking["label"].iloc[0] == "invasive cancer"
        np.testing.assert_allclose(ranking["score"], ranking["probability"])


def test_rank_regions_exponent_out_of_range():
    probabilities, masks = _section()
    with pytest.raises(ValueError, match="Invalid prevalence_exponent=1.5: pass a value between 0 and 1"):
        rank_regions(probabilities, masks, LABELS, prevalence_exponent=1.5)


@pytest.mark.parametrize(
    "mask",
    [np.r_[np.ones(60, dtype=int), np.zeros(40, dtype=int)], np.ones(99, dtype=bool), np.ones((100, 1), dtype=bool)],
    ids=["integer", "short", "two_dimensional"],
)
def test_rank_regions_invalid_mask_raises(mask):
    """An integer 0/1 mask would index rows 0 and 1 instead of selecting spots; it must not pass silently."""
    probabilities, _ = _section()
    with pytest.raises(ValueError, match=r"Mask of region 'r' has dtype .* pass a boolean array with one entry per"):
        rank_regions(probabilities, {"r": mask}, LABELS)


def test_rank_regions_list_mask_equals_array():
    probabilities, masks = _section()
    as_lists = {region: mask.tolist() for region, mask in masks.items()}
    for region, ranking in rank_regions(probabilities, as_lists, LABELS).items():
        expected = rank_regions(probabilities, masks, LABELS)[region]
        np.testing.assert_array_equal(ranking["score"], expected["score"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: np.where(np.arange(100)[:, None] == 3, np.nan, p), "NaN or infinite"),
        (lambda p: p - 0.1 * (np.arange(3) == 2), "negative values"),
        (lambda p: 2 * p, "Row 0 of probabilities sums to 2, not 1"),
    ],
    ids=["nan", "negative", "unnormalised"],
)
def test_rank_regions_invalid_probabilities_raise(change, message):
    probabilities, masks = _section()
    with pytest.raises(ValueError, match=message):
        rank_regions(change(probabilities), masks, LABELS)


def test_rank_regions_duplicated_labels_raise():
    probabilities, masks = _section()
    with pytest.raises(ValueError, match=r"Labels \['cancer'\] occur more than once"):
        rank_regions(probabilities, masks, ["cancer", "cancer", "immune"])


def test_rank_regions_regions_equal_as_strings_raise():
    probabilities, masks = _section()
    with pytest.raises(ValueError, match="Regions 1 and '1' are equal as strings"):
        rank_regions(probabilities, {1: masks["cancer"], "1": masks["stroma"]}, LABELS)


def _obs_section(regions) -> ad.AnnData:
    return ad.AnnData(obs=pd.DataFrame({"region": regions}, index=[f"s{i}" for i in range(len(regions))]))


def test_region_key_replaces_slash():
    assert region_key("immune : B/plasma cells, APC") == "immune : B\u2215plasma cells, APC"
    assert region_key("cancer") == "cancer"


def test_region_codes_regions_and_codes():
    codes, names, regions = region_codes(_obs_section(["a", "b/c", "a", None]), "region")
    assert names == ["a", "b/c"]
    assert regions == {"a": 0, "b/c": 1}
    np.testing.assert_array_equal(codes, [0, 1, 0, -1])


@pytest.mark.parametrize(
    ("regions", "reserved", "message"),
    [
        (["a", ""], (), "region named '', which cannot be a key in an h5ad file"),
        (["a", "params"], ("params",), "region named 'params', which collides with the 'params' entry"),
        (["a/b", "a\u2215b"], (), "get the same key"),
        ([1, "1"], (), "categories that are equal as strings"),
    ],
    ids=["empty", "reserved", "slash", "equal_strings"],
)
def test_region_codes_invalid_names_raise(regions, reserved, message):
    with pytest.raises(ValueError, match=message):
        region_codes(_obs_section(regions), "region", reserved=reserved)


def test_region_codes_float_column_raises():
    adata = _obs_section(np.linspace(0, 1, 50))
    with pytest.raises(ValueError, match=r"adata.obs\['region'\] contains non-integer numbers \(50 distinct values\)"):
        region_codes(adata, "region")


def test_region_codes_integer_valued_floats():
    """Cluster ids read with NaN become floats; they stay usable as regions."""
    _, names, regions = region_codes(_obs_section([0.0, 1.0, np.nan, 1.0]), "region")
    assert names == ["0.0", "1.0"]
    assert set(regions) == {"0.0", "1.0"}


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("immune : B/plasma cells, APC", "immune : B/plasma cells, APC"),
        ("L1", "cortical layer 1"),
        ("tumour", "tumour"),
    ],
)
def test_label_query_glossary_and_colons(label, expected):
    assert label_query(label) == expected


def test_label_query_description():
    assert label_query("c3", {"c3": "stroma: fibroblasts"}) == "stroma: fibroblasts"


def test_rank_regions_non_numeric_exponent_raises():
    probabilities, masks = _section()
    with pytest.raises(ValueError, match="Invalid prevalence_exponent=None: pass a number between 0 and 1"):
        rank_regions(probabilities, masks, LABELS, prevalence_exponent=None)


@pytest.mark.parametrize("name", [".", ".."])
def test_region_codes_dot_names_raise(name):
    with pytest.raises(ValueError, match="cannot be a key in an h5ad file"):
        region_codes(_obs_section(["a", name]), "region")


def test_region_codes_all_missing_raises():
    with pytest.raises(ValueError, match=r"adata.obs\['region'\] has no spot with a region"):
        region_codes(_obs_section([None, None]), "region")
