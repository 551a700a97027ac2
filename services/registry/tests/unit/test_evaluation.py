"""Unit tests of the evaluation functions (against sklearn) and of the decision rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.metrics import log_loss as sk_log_loss

from hindsight.registry.domain import (
    DegradationPolicy,
    Expected,
    arm_metrics,
    brier_score,
    check_degradation,
    decide,
    expected_calibration_error,
    expected_performance,
    log_loss,
    roc_auc,
    should_end,
)

pytestmark = pytest.mark.unit


def _sample(seed: int, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.05, 0.95, n)
    y = (rng.uniform(size=n) < q).astype(float)
    p = np.round(np.clip(q + rng.normal(0, 0.1, n), 0, 1), 2)  # rounding makes ties
    return y, p


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed: int) -> None:
    y, p = _sample(seed)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p, labels=[0, 1]), abs=1e-9)


def test_ece_by_hand() -> None:
    # bin 0: p=0.05, 0.05 with y 0, 1 -> |0.5-0.05| * 2/5; bin 9: p=0.95, 1.0, 0.95, y 1,1,0
    y = [0, 1, 1, 1, 0]
    p = [0.05, 0.05, 0.95, 1.0, 0.95]
    expected = 2 / 5 * abs(0.5 - 0.05) + 3 / 5 * abs(2 / 3 - (0.95 + 1.0 + 0.95) / 3)
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    assert expected_calibration_error([1, 0], [0.3, 0.3]) == pytest.approx(0.2)


def test_degenerate_inputs() -> None:
    assert roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None
    m = arm_metrics([], [])
    assert m.n == 0 and m.win_rate is None and m.brier is None
    assert m.finite() == {"n": 0.0, "wins": 0.0}
    m = arm_metrics([1, 0, 1], [0.9, 0.2, 0.6])
    assert m.n == 3 and m.wins == 2 and m.win_rate == pytest.approx(2 / 3)
    assert set(m.finite()) == {
        "n",
        "wins",
        "win_rate",
        "mean_p",
        "roc_auc",
        "brier",
        "log_loss",
        "ece",
    }
    assert log_loss([1], [1.0]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        brier_score([1, 0], [0.5])


def _arms(seed: int, n: int, *, better: bool) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    rng = np.random.default_rng(seed)
    out = []
    for arm in ("control", "candidate"):
        q = rng.uniform(0.2, 0.8, n)
        y = (rng.uniform(size=n) < q).astype(float)
        if arm == "candidate" or not better:
            p = np.clip(q + rng.normal(0, 0.05, n), 0.01, 0.99)
        else:
            p = rng.uniform(0.05, 0.95, n)  # uninformative and badly calibrated
        out.append((y, p))
    return tuple(out)


def test_decide_promote_keep_inconclusive() -> None:
    control, candidate = _arms(7, 400, better=True)
    verdict = decide(control, candidate, min_samples=200, alpha=0.05)
    assert verdict.decision == "promote" and verdict.winner == "candidate"
    assert verdict.p_value is not None and verdict.p_value < 0.05
    assert verdict.brier_difference is not None and verdict.brier_difference < 0
    # swapped: the candidate is the bad one
    verdict = decide(candidate, control, min_samples=200, alpha=0.05)
    assert verdict.decision == "keep" and verdict.winner == "control"
    # same data below the minimum sample: never a decision, p still reported
    verdict = decide(control, candidate, min_samples=401, alpha=0.05)
    assert verdict.decision == "inconclusive" and verdict.p_value is not None
    assert "minimum sample" in verdict.reason
    # equal arms
    control, candidate = _arms(11, 400, better=False)
    verdict = decide(control, candidate, min_samples=200, alpha=0.05)
    assert verdict.decision == "inconclusive" and verdict.p_value is not None
    assert verdict.p_value >= 0.05


def test_decide_uses_welch() -> None:
    from scipy import stats

    control, candidate = _arms(3, 300, better=True)
    lc = (control[1] - control[0]) ** 2
    lk = (candidate[1] - candidate[0]) ** 2
    expected = stats.ttest_ind(lk, lc, equal_var=False).pvalue
    assert decide(control, candidate, min_samples=2, alpha=0.05).p_value == pytest.approx(expected)


def test_decide_without_variance_is_inconclusive() -> None:
    arm = ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    verdict = decide(arm, arm, min_samples=2, alpha=0.05)
    assert verdict.decision == "inconclusive" and verdict.p_value is None


def test_should_end() -> None:
    control, candidate = _arms(7, 400, better=True)
    decided = decide(control, candidate, min_samples=200, alpha=0.05)
    open_ = decide(control, candidate, min_samples=1000, alpha=0.05)
    kw = {"max_duration_s": 100.0, "max_samples_per_arm": 500}
    assert should_end(decided, n_control=400, n_candidate=400, elapsed_s=1, **kw)
    assert not should_end(open_, n_control=400, n_candidate=400, elapsed_s=1, **kw)
    assert should_end(open_, n_control=400, n_candidate=400, elapsed_s=100, **kw)
    assert should_end(open_, n_control=500, n_candidate=600, elapsed_s=1, **kw)
    assert not should_end(open_, n_control=499, n_candidate=600, elapsed_s=1, **kw)


def test_expected_performance_sources() -> None:
    card = {"metrics": {"trading": {"win_rate": 0.61, "trades": 40}, "test": {"brier": 0.2}}}
    assert expected_performance(card) == Expected(0.61, "trading.win_rate", 0.2)
    card = {
        "metrics": {"trading": {"win_rate": 0.0, "trades": 0}, "test": {"n": 200, "positives": 90}}
    }
    e = expected_performance(card)
    assert e.win_rate == pytest.approx(0.45) and e.win_rate_source == "test.positives/n"
    assert e.brier is None
    card = {"metrics": {"test": {"base_rate": 0.4}, "headline": {"brier": 0.22}}}
    assert expected_performance(card) == Expected(0.4, "test.base_rate", 0.22)
    assert expected_performance(None) == Expected(None, None, None)


def test_check_degradation() -> None:
    policy = DegradationPolicy(window=50, max_win_rate_drop=0.10, max_brier_rise=0.05)
    expected = Expected(0.6, "trading.win_rate", 0.22)
    y = [1.0] * 15 + [0.0] * 35  # 0.30 win rate
    p = [0.6] * 50
    check = check_degradation(y, p, expected, policy)
    assert check.enough and check.degraded and check.win_rate == pytest.approx(0.3)
    assert "win rate 0.300" in check.summary() and "Brier" in check.summary()
    # fewer than the window: never degraded
    assert not check_degradation(y[:49], p[:49], expected, policy).degraded
    # within thresholds: 0.52 win rate (drop 0.08), Brier of p=0.5 is 0.25 (rise 0.03)
    y = [1.0] * 26 + [0.0] * 24
    check = check_degradation(y, [0.5] * 50, expected, policy)
    assert check.enough and not check.degraded and check.reasons == []
    # only the Brier rule
    check = check_degradation(y, [0.05] * 26 + [0.95] * 24, expected, policy)
    assert check.degraded and all("Brier" in r for r in check.reasons)
