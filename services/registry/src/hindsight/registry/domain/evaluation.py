"""Outcome-joined evaluation: per-arm metrics, the significance test, degradation (no I/O).

``y`` is 1 for a win and 0 for a loss or breakeven; ``p`` the logged ``p_success``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from hindsight.common.registry_api import Decision, DegradationCheck, TestDecision

__all__ = [
    "ArmMetrics",
    "Decision",
    "DegradationCheck",
    "DegradationPolicy",
    "Expected",
    "TestDecision",
    "arm_metrics",
    "brier_losses",
    "brier_score",
    "check_degradation",
    "decide",
    "expected_calibration_error",
    "expected_performance",
    "log_loss",
    "roc_auc",
    "should_end",
]


def _arrays(y: ArrayLike, p: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    yy = np.asarray(y, dtype=np.float64).ravel()
    pp = np.asarray(p, dtype=np.float64).ravel()
    if yy.shape != pp.shape:
        raise ValueError(f"y has {yy.size} values, p has {pp.size}")
    return yy, pp


def brier_losses(y: ArrayLike, p: ArrayLike) -> NDArray[np.float64]:
    """Per-prediction Brier loss ``(p - y)**2`` (what the significance test compares)."""
    yy, pp = _arrays(y, p)
    return np.asarray((pp - yy) ** 2, dtype=np.float64)


def brier_score(y: ArrayLike, p: ArrayLike) -> float | None:
    """Mean squared error of the probabilities; None without data."""
    losses = brier_losses(y, p)
    return float(losses.mean()) if losses.size else None


def log_loss(y: ArrayLike, p: ArrayLike) -> float | None:
    """Mean negative log-likelihood, p clipped to [eps, 1 - eps] (as sklearn does)."""
    yy, pp = _arrays(y, p)
    if not yy.size:
        return None
    eps = float(np.finfo(np.float64).eps)
    pp = np.clip(pp, eps, 1 - eps)
    return float(-np.mean(yy * np.log(pp) + (1 - yy) * np.log(1 - pp)))


def roc_auc(y: ArrayLike, p: ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney with tied ranks); None with one class only."""
    yy, pp = _arrays(y, p)
    positives = int(np.sum(yy == 1))
    negatives = yy.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = stats.rankdata(pp)
    u = float(np.sum(ranks[yy == 1])) - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def expected_calibration_error(y: ArrayLike, p: ArrayLike, *, bins: int = 10) -> float | None:
    """ECE over ``bins`` equal-width bins of [0, 1] (p = 1 in the last bin), weighted by count."""
    yy, pp = _arrays(y, p)
    if not yy.size:
        return None
    index = np.minimum((pp * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        if count:
            total += count / yy.size * abs(float(yy[mask].mean()) - float(pp[mask].mean()))
    return total


@dataclass(frozen=True, slots=True)
class ArmMetrics:
    """One arm's outcome-joined metrics (None where undefined: no data, or one class only)."""

    n: int
    wins: int
    win_rate: float | None
    mean_p: float | None
    roc_auc: float | None
    brier: float | None
    log_loss: float | None
    ece: float | None

    def finite(self) -> dict[str, float]:
        """Only the defined numbers (the ``per_arm`` of ``ab.completed``)."""
        return {
            k: float(v)
            for k, v in asdict(self).items()
            if v is not None and math.isfinite(float(v))
        }


def arm_metrics(y: ArrayLike, p: ArrayLike) -> ArmMetrics:
    """Every metric of one arm."""
    yy, pp = _arrays(y, p)
    n = int(yy.size)
    return ArmMetrics(
        n=n,
        wins=int(yy.sum()),
        win_rate=float(yy.mean()) if n else None,
        mean_p=float(pp.mean()) if n else None,
        roc_auc=roc_auc(yy, pp),
        brier=brier_score(yy, pp),
        log_loss=log_loss(yy, pp),
        ece=expected_calibration_error(yy, pp),
    )


def decide(
    control: tuple[ArrayLike, ArrayLike],
    candidate: tuple[ArrayLike, ArrayLike],
    *,
    min_samples: int,
    alpha: float,
) -> TestDecision:
    """Welch's t-test on per-prediction Brier losses, candidate vs control.

    ``promote`` when the candidate's mean Brier is lower with p < alpha, ``keep`` when it is
    higher with p < alpha, ``inconclusive`` otherwise, and always while an arm has fewer
    than ``min_samples`` outcomes (the p-value is still reported when it can be computed).
    """
    lc = brier_losses(*control)
    lk = brier_losses(*candidate)
    diff = float(lk.mean() - lc.mean()) if lc.size and lk.size else None
    p_value: float | None = None
    statistic: float | None = None
    if lc.size >= 2 and lk.size >= 2:
        result = stats.ttest_ind(lk, lc, equal_var=False)
        t, pv = float(result.statistic), float(result.pvalue)
        if math.isfinite(pv):
            p_value, statistic = pv, t
    if lc.size < min_samples or lk.size < min_samples:
        return TestDecision(
            "inconclusive",
            None,
            p_value,
            statistic,
            diff,
            f"below the minimum sample: control {lc.size}, candidate {lk.size}, "
            f"need {min_samples} per arm",
        )
    if p_value is None or diff is None:
        return TestDecision(
            "inconclusive", None, None, None, diff, "the test is undefined (no variance)"
        )
    if p_value < alpha:
        if diff < 0:
            return TestDecision(
                "promote",
                "candidate",
                p_value,
                statistic,
                diff,
                f"candidate Brier lower by {-diff:.4f} (p={p_value:.3g} < {alpha:g})",
            )
        if diff > 0:
            return TestDecision(
                "keep",
                "control",
                p_value,
                statistic,
                diff,
                f"candidate Brier higher by {diff:.4f} (p={p_value:.3g} < {alpha:g})",
            )
    return TestDecision(
        "inconclusive",
        None,
        p_value,
        statistic,
        diff,
        f"no significant Brier difference ({diff:+.4f}, p={p_value:.3g} >= {alpha:g})",
    )


def should_end(
    verdict: TestDecision,
    *,
    n_control: int,
    n_candidate: int,
    elapsed_s: float,
    max_duration_s: float,
    max_samples_per_arm: int,
) -> bool:
    """The background evaluator ends an experiment when decided, or out of time or samples."""
    if verdict.decision != "inconclusive":
        return True
    if elapsed_s >= max_duration_s:
        return True
    return min(n_control, n_candidate) >= max_samples_per_arm


# --- degradation -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DegradationPolicy:
    """Thresholds of the degradation monitor (settings ``HINDSIGHT_REGISTRY_DEGRADATION_*``)."""

    window: int = 50
    max_win_rate_drop: float = 0.10
    max_brier_rise: float = 0.05


@dataclass(frozen=True, slots=True)
class Expected:
    """What the card promised: win rate (and where it came from) and test Brier."""

    win_rate: float | None
    win_rate_source: str | None
    brier: float | None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _get(card: Mapping[str, Any], *path: str) -> Any:
    node: Any = card
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def expected_performance(card: Mapping[str, Any] | None) -> Expected:
    """The card's test win rate of the trades it takes and test Brier.

    Win rate: ``metrics.trading.win_rate`` when the model took trades on the test block
    (``trades`` absent or > 0), else the test block's base rate (``positives / n``, or
    ``metrics.test.base_rate``). Brier: ``metrics.test.brier`` (``metrics.headline.brier``).
    """
    if not card:
        return Expected(None, None, None)
    win: float | None = None
    source: str | None = None
    trading_win = _num(_get(card, "metrics", "trading", "win_rate"))
    trades = _num(_get(card, "metrics", "trading", "trades"))
    if trading_win is not None and (trades is None or trades > 0):
        win, source = trading_win, "trading.win_rate"
    else:
        base = _num(_get(card, "metrics", "test", "base_rate"))
        positives = _num(_get(card, "metrics", "test", "positives"))
        n = _num(_get(card, "metrics", "test", "n"))
        if base is not None:
            win, source = base, "test.base_rate"
        elif positives is not None and n:
            win, source = positives / n, "test.positives/n"
    brier = _num(_get(card, "metrics", "test", "brier"))
    if brier is None:
        brier = _num(_get(card, "metrics", "headline", "brier"))
    return Expected(win, source, brier)


def check_degradation(
    y: Sequence[float] | ArrayLike,
    p: Sequence[float] | ArrayLike,
    expected: Expected,
    policy: DegradationPolicy,
) -> DegradationCheck:
    """Compare the last outcomes (``window`` of them needed) with the card's test numbers."""
    yy, pp = _arrays(y, p)
    n = int(yy.size)
    win = float(yy.mean()) if n else None
    brier = brier_score(yy, pp)
    enough = n >= policy.window
    reasons: list[str] = []
    if enough and win is not None and expected.win_rate is not None:
        drop = expected.win_rate - win
        if drop > policy.max_win_rate_drop:
            reasons.append(
                f"rolling win rate {win:.3f} over the last {n} outcomes is {drop:.3f} below "
                f"the card's {expected.win_rate:.3f} (max drop {policy.max_win_rate_drop:g})"
            )
    if enough and brier is not None and expected.brier is not None:
        rise = brier - expected.brier
        if rise > policy.max_brier_rise:
            reasons.append(
                f"rolling Brier {brier:.4f} over the last {n} outcomes is {rise:.4f} above "
                f"the card's {expected.brier:.4f} (max rise {policy.max_brier_rise:g})"
            )
    return DegradationCheck(
        n=n,
        enough=enough,
        win_rate=win,
        brier=brier,
        expected_win_rate=expected.win_rate,
        expected_brier=expected.brier,
        degraded=bool(reasons),
        reasons=reasons,
    )
