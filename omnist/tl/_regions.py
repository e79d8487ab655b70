"""Region identities: rank candidate labels for groups of spots from the spots' label probabilities.

A region is ranked against its own section. For each candidate label, ``probability`` is the region's mean
spot probability and ``prevalence`` is the label's mean probability over all spots of the section.
``enrichment`` is their ratio. The ranking score is

    probability / prevalence ** PREVALENCE_EXPONENT

so with the default exponent of 0.5 it is the geometric mean of the probability and the enrichment. The
probability alone favours the labels that were common in training, which a classifier predicts for most
spots of an unfamiliar patient; the enrichment alone favours rare labels that happen to rise slightly in
a large region. Where the region is the whole section the score ranks labels by probability.

NOTE: the enrichment cannot rescue a region whose spots the classifier scores like the rest of the
section, as when it gives nearly every spot of a patient the same label.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

# Exponent of the section-wide prevalence divided out of a region's mean label probability: 0 ranks by
# probability, 1 by enrichment over the section. 0.5 mirrors the inverse square-root label weights of training.
PREVALENCE_EXPONENT = 0.5
# Prevalences are floored here, so a label the softmax rounds to zero everywhere gets a finite score.
PROBABILITY_FLOOR = 1e-12
# Rows of probabilities may miss a sum of 1 by this much (float32 softmax output).
SUM_TOLERANCE = 1e-3
# h5ad stores a uns key that contains "/" as nested groups, so region keys carry U+2215 DIVISION SLASH instead.
KEY_SLASH = "\u2215"


def rank_regions(
    probabilities: np.ndarray,
    masks: Mapping[str, np.ndarray],
    values: Sequence[str],
    *,
    prevalence_exponent: float = PREVALENCE_EXPONENT,
) -> dict[str, pd.DataFrame]:
    """Rank ``values`` for each region by how strongly its spots' probabilities point to them.

    Parameters
    ----------
    probabilities
        Label probabilities ``(spots, labels)`` of every spot of the section, rows summing to 1.
    masks
        ``{region: boolean mask over the spots}``; each mask selects at least one spot.
    values
        The label names, one per column of ``probabilities``.
    prevalence_exponent
        Power of the section-wide prevalence that divides the region's mean probability: 0 ranks labels by
        probability alone, 1 by enrichment alone.

    Returns
    -------
    ``{region: DataFrame}`` with columns ``label``, ``score``, ``probability`` and ``enrichment``, best first.
    """
    if isinstance(prevalence_exponent, bool) or not isinstance(prevalence_exponent, numbers.Real):
        raise ValueError(f"Invalid prevalence_exponent={prevalence_exponent!r}: pass a number between 0 and 1.")
    if not 0.0 <= prevalence_exponent <= 1.0:
        raise ValueError(f"Invalid prevalence_exponent={prevalence_exponent}: pass a value between 0 and 1.")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(values):
        raise ValueError(
            f"Invalid probabilities of shape {probabilities.shape}: expected one column per label ({len(values)})."
        )
    _check_probabilities(probabilities)
    labels = np.asarray([str(value) for value in values], dtype=object)
    repeated = sorted({label for label in labels if (labels == label).sum() > 1})
    if repeated:
        raise ValueError(f"Labels {repeated} occur more than once in values: pass each label once.")
    masks = _check_masks(masks, len(probabilities))
    prevalence = np.maximum(probabilities.mean(axis=0), PROBABILITY_FLOOR)
    rankings = {}
    for region, mask in masks.items():
        probability = probabilities[mask].mean(axis=0)
        score = probability / prevalence**prevalence_exponent
        order = np.argsort(-score, kind="stable")
        rankings[region] = pd.DataFrame(
            {
                "label": labels[order],
                "score": score[order],
                "probability": probability[order],
                "enrichment": probability[order] / prevalence[order],
            }
        )
    return rankings


def _check_probabilities(probabilities: np.ndarray) -> None:
    if not np.isfinite(probabilities).all():
        raise ValueError("probabilities contain NaN or infinite values: pass finite label probabilities.")
    if (probabilities < 0).any():
        raise ValueError(f"probabilities contain negative values (min {probabilities.min():.3g}): pass probabilities.")
    sums = probabilities.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise ValueError(
            f"Row {row} of probabilities sums to {sums[row]:.4g}, not 1: pass one probability distribution per "
            "spot, e.g. a softmax over the labels."
        )


def _check_masks(masks: Mapping[str, np.ndarray], n_spots: int) -> dict[str, np.ndarray]:
    """Return the masks as boolean arrays keyed by string, or raise on masks that are not one bool per spot."""
    checked: dict[str, np.ndarray] = {}
    originals: dict[str, object] = {}
    for region, mask in masks.items():
        array = np.asarray(mask)
        if array.dtype != bool or array.shape != (n_spots,):
            raise ValueError(
                f"Mask of region {region!r} has dtype {array.dtype} and shape {array.shape}: pass a boolean "
                f"array with one entry per spot ({n_spots},)."
            )
        if not array.any():
            raise ValueError(f"Region {region!r} has no spots: pass masks that select at least one spot.")
        if str(region) in checked:
            raise ValueError(
                f"Regions {originals[str(region)]!r} and {region!r} are equal as strings: give them distinct names."
            )
        originals[str(region)] = region
        checked[str(region)] = array
    return checked


def region_key(region: str) -> str:
    """Return the ``uns`` key of a region: its name with "/" replaced by U+2215, which h5ad files can store."""
    return str(region).replace("/", KEY_SLASH)


def region_codes(
    adata: AnnData, groupby: str, groups: str | Sequence[str] | None = None, reserved: Collection[str] = ()
) -> tuple[np.ndarray, list[str], dict[str, int]]:
    """Return each spot's code in ``obs[groupby]`` (-1 = no region), the category names and ``{region: code}``.

    The regions are ``groups``, or every category with spots. Raises when two categories are equal as strings,
    a region name is empty, "." or "..", or its ``uns`` key (see :func:`region_key`) is in ``reserved`` or shared with
    another region.
    """
    if groupby not in adata.obs:
        raise KeyError(f"groupby {groupby!r} is not a column of adata.obs; columns: {list(adata.obs.columns)}.")
    values = adata.obs[groupby]
    if pd.api.types.is_float_dtype(values) and (values.dropna() != values.dropna().round()).any():
        raise ValueError(
            f"adata.obs[{groupby!r}] contains non-integer numbers ({values.nunique()} distinct values): pass a column "
            "of region labels (categorical, string or integer)."
        )
    column = adata.obs[groupby].astype("category")
    codes = column.cat.codes.to_numpy()
    names = [str(category) for category in column.cat.categories]
    if len(set(names)) < len(names):
        raise ValueError(f"adata.obs[{groupby!r}] has categories that are equal as strings: {names}.")
    available = {name: index for index, name in enumerate(names) if (codes == index).any()}
    if not available:
        raise ValueError(
            f"adata.obs[{groupby!r}] has no spot with a region (every value is missing): pass a filled column."
        )
    if groups is None:
        chosen = available
    else:
        requested = [str(group) for group in ([groups] if isinstance(groups, str) else groups)]
        missing = [group for group in requested if group not in available]
        if missing:
            raise KeyError(f"Groups {missing} are not in adata.obs[{groupby!r}]; available: {list(available)}.")
        if not requested:
            raise ValueError("groups is empty: pass at least one region or None for all regions.")
        chosen = {group: available[group] for group in dict.fromkeys(requested)}
    keys: dict[str, str] = {}
    for name in chosen:
        key = region_key(name)
        if not name.strip() or name in (".", ".."):
            raise ValueError(
                f"adata.obs[{groupby!r}] has a region named {name!r}, which cannot be a key in an h5ad file: rename "
                "it, or set it to NaN if it marks spots without a region."
            )
        if key in reserved:
            raise ValueError(
                f"adata.obs[{groupby!r}] has a region named {name!r}, which collides with the {key!r} entry: "
                "rename the region."
            )
        if key in keys:
            raise ValueError(
                f"Regions {keys[key]!r} and {name!r} of adata.obs[{groupby!r}] get the same key {key!r} ('/' is "
                f"stored as {KEY_SLASH!r}): rename one of them."
            )
        keys[key] = name
    return codes, names, chosen
