"""The training data set as the domain sees it: one row per signal with a known outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

__all__ = ["LABEL_WEIGHTS", "FloatArray", "TrainingRow", "feature_matrix", "target", "trade_r"]

FloatArray = npt.NDArray[np.float64]

# Human labels are sample weights of the training block only (README: "Human labels").
LABEL_WEIGHTS: Mapping[str, float] = {"approved": 1.0, "review": 1.0, "rejected": 0.5}


@dataclass(frozen=True, slots=True)
class TrainingRow:
    """A signal joined with its outcome (and its human label, when any)."""

    signal_id: str
    symbol: str
    timeframe: str
    side: str
    ts: datetime
    features: Mapping[str, float | None]
    feature_schema_version: int
    closed_at: datetime
    result: str | None
    entry_price: float | None = None
    exit_price: float | None = None
    realised_r: float | None = None
    label: str | None = None
    seq: int = 0
    occurred_at: datetime | None = None
    extra: Mapping[str, object] = field(default_factory=dict)


def feature_matrix(rows: Sequence[TrainingRow], names: Sequence[str]) -> FloatArray:
    """``[len(rows), len(names)]`` float64, NaN where a feature is missing."""
    x = np.full((len(rows), len(names)), np.nan, dtype=np.float64)
    for i, row in enumerate(rows):
        feats = row.features
        for j, name in enumerate(names):
            value = feats.get(name)
            if value is not None:
                x[i, j] = value
    return x


def target(rows: Sequence[TrainingRow]) -> npt.NDArray[np.int32]:
    """1 for a win, 0 for a loss or a breakeven (a breakeven is not a success)."""
    return np.array([1 if r.result == "win" else 0 for r in rows], dtype=np.int32)


def trade_r(rows: Sequence[TrainingRow]) -> FloatArray:
    """R multiple per trade: ``realised_r`` when known, else +1 / -1 / 0 from the result."""
    fallback = {"win": 1.0, "loss": -1.0, "breakeven": 0.0}
    return np.array(
        [
            r.realised_r if r.realised_r is not None else fallback.get(r.result or "", 0.0)
            for r in rows
        ],
        dtype=np.float64,
    )
