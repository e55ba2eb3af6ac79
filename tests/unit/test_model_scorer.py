"""The numpy scorer equals scikit-learn's score_samples to 1e-9 (random and real SKAB inputs)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from functions.detector.iforest import IsolationForestScorer, average_path_length
from model.export import export_forest
from testkit.shared_data import SKAB_DIR

SKAB = SKAB_DIR


@pytest.mark.parametrize(
    ("n_estimators", "max_samples", "max_features", "n_features"),
    [(100, 256, 1.0, 12), (30, 37, 0.5, 7), (10, 3, 1.0, 2), (20, "auto", 1.0, 1)],
)
def test_scores_equal_sklearn_on_random_inputs(n_estimators, max_samples, max_features, n_features):
    # GIVEN a forest fitted on heavy-tailed data with duplicate values (leaves with n > 1 samples)
    rng = np.random.default_rng(n_features)
    X = np.round(rng.standard_t(3, size=(2000, n_features)), 1)
    forest = IsolationForest(
        n_estimators=n_estimators, max_samples=max_samples, max_features=max_features, random_state=3
    ).fit(X)
    scorer = IsolationForestScorer(export_forest(forest))
    # WHEN scoring new rows, in and far outside the training range, plus exact threshold values
    Y = np.concatenate([rng.normal(size=(3000, n_features)) * 4, X[:500]])
    # THEN the scores match scikit-learn
    assert np.max(np.abs(scorer.score_samples(Y) - forest.score_samples(Y))) <= 1e-9


def test_nan_follows_sklearn_missing_value_routing():
    rng = np.random.default_rng(1)
    forest = IsolationForest(n_estimators=20, random_state=0).fit(rng.normal(size=(500, 4)))
    Y = rng.normal(size=(200, 4))
    Y[::3, 1] = np.nan
    scorer = IsolationForestScorer(export_forest(forest))
    assert np.max(np.abs(scorer.score_samples(Y) - forest.score_samples(Y))) <= 1e-9


def test_average_path_length_matches_sklearn():
    from sklearn.ensemble._iforest import _average_path_length

    n = np.arange(0, 600)
    assert np.allclose(average_path_length(n), _average_path_length(n), rtol=0, atol=1e-12)


@pytest.mark.skipif(not SKAB.exists(), reason="SKAB data not present")
def test_scores_equal_sklearn_on_skab_rows():
    from model.skab import find_files, load_file

    data = load_file(find_files(SKAB)[0])
    forest = IsolationForest(n_estimators=50, random_state=0).fit(data.values[:400])
    scorer = IsolationForestScorer(export_forest(forest))
    assert np.max(np.abs(scorer.score_samples(data.values) - forest.score_samples(data.values))) <= 1e-9
