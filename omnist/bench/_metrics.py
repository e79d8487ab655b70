"""Metrics of the benchmark."""

from __future__ import annotations

import numpy as np


def pearson_per_gene(measured: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Return Pearson r between measured and predicted values of each gene (column) over spots.

    A gene that does not vary in ``measured`` gets NaN, since no prediction can correlate with it. A
    constant prediction of a varying gene gets 0: it carries no information about which spots are higher.
    """
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if measured.shape != predicted.shape:
        raise ValueError(f"Shapes differ: measured {measured.shape}, predicted {predicted.shape}.")
    dm = measured - measured.mean(axis=0)
    dp = predicted - predicted.mean(axis=0)
    norm_m = np.sqrt((dm**2).sum(axis=0))
    norm_p = np.sqrt((dp**2).sum(axis=0))
    r = np.zeros(measured.shape[1])
    varying = norm_p > 1e-12
    r[varying] = (dm[:, varying] * dp[:, varying]).sum(axis=0) / (norm_m[varying] * norm_p[varying] + 1e-300)
    r[norm_m <= 1e-12] = np.nan
    return r


def mean_pearson(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Return the mean over genes of :func:`pearson_per_gene`, skipping genes that do not vary."""
    return float(np.nanmean(pearson_per_gene(measured, predicted)))
