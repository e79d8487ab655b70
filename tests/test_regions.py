"""Tests of omnist.tl.rank_regions, the region identity ranking that explain and translate share."""

from __future__ import annotations

import numpy as np
import pytest

from omnist.tl import rank_regions

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
