from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from hindsight.trainer.domain.metrics import (
    average_precision,
    bootstrap_auc,
    brier_score,
    classification_metrics,
    expected_calibration_error,
    log_loss,
    roc_auc,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    p = np.round(p, 2)  # ties
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    assert brier_score(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, np.clip(p, 1e-15, 1 - 1e-15)), abs=1e-9)
    m = classification_metrics(y, p, bootstrap_resamples=20)
    pred = (p >= 0.5).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert m["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))


def test_ece_by_hand() -> None:
    # bin [0.1,0.2): p=0.15 twice, one win -> |0.15-0.5| ; bin [0.9,1]: p=0.95, win -> 0.05
    y = np.array([1, 0, 1])
    p = np.array([0.15, 0.15, 0.95])
    assert expected_calibration_error(y, p) == pytest.approx(2 / 3 * 0.35 + 1 / 3 * 0.05)


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = 0.2 * y + rng.random(400) * 0.8
    lo, hi = bootstrap_auc(y, p, resamples=200, seed=1)
    assert (lo, hi) == bootstrap_auc(y, p, resamples=200, seed=1)
    assert lo < roc_auc(y, p) < hi


def test_one_class_gives_nan() -> None:
    assert np.isnan(roc_auc(np.ones(5), np.linspace(0, 1, 5)))


def test_bootstrap_resample_auc_matches_a_direct_computation() -> None:
    # Same seed, same picks: the O(n) counts formula equals sklearn on the resampled rows.
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 300)
    p = np.round(0.3 * y + rng.random(300) * 0.7, 2)
    lo, hi = bootstrap_auc(y, p, resamples=1, seed=5, level=0.0)
    picks = np.random.default_rng(5).integers(0, 300, 300)
    direct = skm.roc_auc_score(y[picks], p[picks])
    assert lo == pytest.approx(direct, abs=1e-12) and hi == pytest.approx(direct, abs=1e-12)
