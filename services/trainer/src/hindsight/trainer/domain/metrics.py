"""Classification metrics (own implementations, checked against scikit-learn in tests)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from hindsight.trainer.domain.jsonsafe import JsonObject

__all__ = [
    "average_precision",
    "bootstrap_auc",
    "brier_score",
    "classification_metrics",
    "expected_calibration_error",
    "log_loss",
    "reliability_table",
    "roc_auc",
]

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.NDArray[Any]
_CLIP = 1e-15


def roc_auc(y: ArrayLike, p: ArrayLike) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula, ties counted half; NaN for one class."""
    y = np.asarray(y)
    n_pos = int(np.sum(y == 1))
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((np.sum(ranks[y == 1]) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y: ArrayLike, p: ArrayLike) -> float:
    """PR-AUC as average precision (scikit-learn's definition, tied scores grouped)."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    n_pos = int(np.sum(y == 1))
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    ps, ys = p[order], y[order]
    last_of_group = np.r_[np.diff(ps) != 0, True]
    tp = np.cumsum(ys == 1)[last_of_group]
    fp = np.cumsum(ys != 1)[last_of_group]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    prev_recall = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev_recall) * precision))


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y)) ** 2))


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    """Mean negative log-likelihood, probabilities clipped to [1e-15, 1 - 1e-15]."""
    q = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1 - _CLIP)
    yy = np.asarray(y)
    return float(-np.mean(yy * np.log(q) + (1 - yy) * np.log(1 - q)))


def reliability_table(y: ArrayLike, p: ArrayLike, bins: int = 10) -> list[JsonObject]:
    """Equal-width bins over [0, 1] (the last closed): n, mean p, observed win rate."""
    p = np.asarray(p, dtype=np.float64)
    yy = np.asarray(y)
    idx = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    table = []
    for b in range(bins):
        sel = idx == b
        n = int(np.sum(sel))
        table.append(
            {
                "lo": b / bins,
                "hi": (b + 1) / bins,
                "n": n,
                "positives": int(np.sum(yy[sel] == 1)),
                "mean_p": float(np.mean(p[sel])) if n else None,
                "frac_positive": float(np.mean(yy[sel] == 1)) if n else None,
            }
        )
    return table


def expected_calibration_error(y: ArrayLike, p: ArrayLike, bins: int = 10) -> float:
    """ECE: the n-weighted mean |mean p - win rate| over equal-width bins."""
    total = len(np.asarray(y))
    if total == 0:
        return float("nan")
    return float(
        sum(
            row["n"] / total * abs(row["mean_p"] - row["frac_positive"])
            for row in reliability_table(y, p, bins)
            if row["n"]
        )
    )


def bootstrap_auc(
    y: ArrayLike, p: ArrayLike, *, resamples: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ROC-AUC (resamples with one class skipped).

    Each resample is a vector of counts per row; the AUC of a resample is computed on the
    scores sorted once (tied scores grouped), so a resample costs O(n), not a sort.
    """
    yy = np.asarray(y).astype(np.float64)
    pp = np.asarray(p, dtype=np.float64)
    n = len(yy)
    if n == 0 or resamples <= 0:
        return float("nan"), float("nan")
    order = np.argsort(pp, kind="mergesort")
    ys = yy[order]
    starts = np.r_[0, np.flatnonzero(np.diff(pp[order])) + 1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)[order].astype(np.float64)
        pos = np.add.reduceat(counts * ys, starts)
        neg = np.add.reduceat(counts * (1.0 - ys), starts)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            continue
        below = np.cumsum(neg) - neg
        values.append(float((pos @ below + 0.5 * (pos @ neg)) / (total_pos * total_neg)))
    if not values:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def classification_metrics(
    y: ArrayLike,
    p: ArrayLike,
    *,
    threshold: float = 0.5,
    bootstrap_resamples: int = 200,
    seed: int = 0,
) -> JsonObject:
    """Every test-block metric of one model's calibrated probabilities."""
    yy = np.asarray(y)
    pp = np.asarray(p, dtype=np.float64)
    pred = (pp >= threshold).astype(np.int64)
    tp = int(np.sum((pred == 1) & (yy == 1)))
    fp = int(np.sum((pred == 1) & (yy == 0)))
    fn = int(np.sum((pred == 0) & (yy == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    lo, hi = bootstrap_auc(yy, pp, resamples=bootstrap_resamples, seed=seed)
    return {
        "n": len(yy),
        "positives": int(np.sum(yy == 1)),
        "roc_auc": roc_auc(yy, pp),
        "roc_auc_ci95": [lo, hi],
        "pr_auc": average_precision(yy, pp),
        "accuracy": float(np.mean(pred == yy)) if len(yy) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "brier": brier_score(yy, pp),
        "log_loss": log_loss(yy, pp),
        "ece": expected_calibration_error(yy, pp),
        "reliability": reliability_table(yy, pp),
        "threshold": threshold,
    }
