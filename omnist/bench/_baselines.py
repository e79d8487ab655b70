"""Baselines of the image → expression benchmark."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# Ridge penalties tried by generalised cross-validation inside the training sections.
RIDGE_ALPHAS = np.logspace(-1, 5, 13)


def mean_predictor(train_targets: np.ndarray, n_test: int) -> np.ndarray:
    """Predict the training mean of every gene for every held-out spot."""
    return np.repeat(train_targets.mean(axis=0, keepdims=True), n_test, axis=0)


def ridge_probe(
    train_features: np.ndarray, train_targets: np.ndarray, test_features: np.ndarray, n_components: int = 50
) -> np.ndarray:
    """Fit standardise → PCA → ridge on image features and predict the held-out spots.

    This is the linear probe the HEST benchmark (Jaume et al., 2024) applies to encoder features, here on
    hand-made colour, stain and texture features. The penalty is chosen by leave-one-out cross-validation
    (``RidgeCV``'s efficient GCV) on the training spots.
    """
    n_components = min(n_components, train_features.shape[1], train_features.shape[0] - 1)
    model = make_pipeline(
        StandardScaler(), PCA(n_components=n_components, random_state=0), RidgeCV(alphas=RIDGE_ALPHAS)
    )
    return model.fit(train_features, train_targets).predict(test_features)
