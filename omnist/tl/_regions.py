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

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# Exponent of the section-wide prevalence divided out of a region's mean label probability: 0 ranks by
# probability, 1 by enrichment over the section. 0.5 mirrors the inverse square-root label weights of training.
PREVALENCE_EXPONENT = 0.5
# Prevalences are floored here, so a label the softmax rounds to zero everywhere gets a finite score.
PROBABILITY_FLOOR = 1e-12


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
    if not 0.0 <= prevalence_exponent <= 1.0:
        raise ValueError(f"Invalid prevalence_exponent={prevalence_exponent}: pass a value between 0 and 1.")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(values):
        raise ValueError(
            f"Invalid probabilities of shape {probabilities.shape}: expected one column per label ({len(values)})."
        )
    labels = np.asarray([str(value) for value in values], dtype=object)
    prevalence = np.maximum(probabilities.mean(axis=0), PROBABILITY_FLOOR)
    rankings = {}
    for region, mask in masks.items():
        if not mask.any():
            raise ValueError(f"Region {region!r} has no spots: pass masks that select at least one spot.")
        probability = probabilities[mask].mean(axis=0)
        score = probability / prevalence**prevalence_exponent
        order = np.argsort(-score, kind="stable")
        rankings[str(region)] = pd.DataFrame(
            {
                "label": labels[order],
                "score": score[order],
                "probability": probability[order],
                "enrichment": probability[order] / prevalence[order],
            }
        )
    return rankings
