"""Leak-free splits by time: train / validation / test blocks and expanding CV folds.

Rows are sorted by ``ts``. Between two blocks an embargo of ``embargo`` rows is dropped
from the end of the earlier block, and every earlier-block row whose outcome closed at or
after the first later-block signal is purged too (its label was only known in the later
block's time). So every training row is strictly older than every validation row, and its
outcome was known before the validation block began.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

__all__ = [
    "Blocks",
    "Fold",
    "SplitConfig",
    "cv_folds",
    "embargo_rows",
    "split_blocks",
    "to_micros",
]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SplitConfig:
    """Fractions of the blocks and the embargo between them."""

    train_frac: float = 0.70
    validation_frac: float = 0.15
    embargo_frac: float = 0.01
    """Rows dropped at the end of each earlier block, as a share of all rows."""
    embargo_time: timedelta = timedelta(0)
    """Also drop earlier-block rows less than this before the later block's first signal."""
    cv_folds: int = 5


@dataclass(frozen=True, slots=True)
class Blocks:
    """Indices into the time-sorted rows."""

    train: IntArray
    validation: IntArray
    test: IntArray
    dropped: IntArray


@dataclass(frozen=True, slots=True)
class Fold:
    """One expanding CV fold: indices into the train block's rows."""

    train: IntArray
    validation: IntArray


def embargo_rows(n: int, frac: float) -> int:
    """The embargo in rows: ``ceil(frac * n)`` (0 when ``frac`` is 0)."""
    return int(math.ceil(frac * n)) if frac > 0 else 0


def to_micros(values: Sequence[datetime]) -> IntArray:
    """Aware datetimes as int64 microseconds since the epoch (what the splits take)."""
    return np.array([round(v.timestamp() * 1_000_000) for v in values], dtype=np.int64)


def _before(
    earlier: IntArray,
    later_start: int,
    ts: IntArray,
    closed: IntArray,
    gap_rows: int,
    gap_time: timedelta,
) -> IntArray:
    """Earlier-block rows kept: outside the row gap, strictly older, closed in time."""
    first = ts[later_start]
    gap_us = int(gap_time.total_seconds() * 1_000_000)
    keep = earlier[: max(0, len(earlier) - gap_rows)]
    mask = (ts[keep] < first - gap_us) & (ts[keep] < first) & (closed[keep] < first)
    return np.asarray(keep[mask], dtype=np.int64)


def split_blocks(ts: IntArray, closed: IntArray, config: SplitConfig) -> Blocks:
    """Train / validation / test indices of rows already sorted by ``ts`` (epoch µs)."""
    n = len(ts)
    if n > 1 and bool(np.any(np.diff(ts) < 0)):
        raise ValueError("rows must be sorted by ts")
    b1 = int(n * config.train_frac)
    b2 = int(n * (config.train_frac + config.validation_frac))
    if not 0 < b1 < b2 < n:
        raise ValueError(f"too few rows ({n}) to split")
    gap = embargo_rows(n, config.embargo_frac)
    idx = np.arange(n, dtype=np.int64)
    train = _before(idx[:b1], b1, ts, closed, gap, config.embargo_time)
    validation = _before(idx[b1:b2], b2, ts, closed, gap, config.embargo_time)
    test = idx[b2:]
    kept = np.concatenate([train, validation, test])
    dropped = np.setdiff1d(idx, kept)
    return Blocks(train=train, validation=validation, test=test, dropped=dropped)


def cv_folds(ts: IntArray, closed: IntArray, config: SplitConfig) -> list[Fold]:
    """Expanding-window folds over rows sorted by ``ts`` (the train block).

    The rows are cut into ``cv_folds + 1`` chunks; fold ``k`` validates on chunk ``k + 1``
    and trains on chunks ``0..k`` with the embargo and the purge applied.
    """
    n = len(ts)
    k = config.cv_folds
    if k <= 0:
        return []
    edges = [int(round(i * n / (k + 1))) for i in range(k + 2)]
    gap = embargo_rows(n, config.embargo_frac)
    idx = np.arange(n, dtype=np.int64)
    folds: list[Fold] = []
    for i in range(k):
        start, end = edges[i + 1], edges[i + 2]
        if start >= end or start == 0:
            continue
        train = _before(idx[:start], start, ts, closed, gap, config.embargo_time)
        if len(train) == 0:
            continue
        folds.append(Fold(train=train, validation=idx[start:end]))
    return folds
