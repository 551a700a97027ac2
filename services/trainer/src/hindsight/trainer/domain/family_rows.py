"""A family's training rows: a signal joined with its Back-Labeler label of one spec.

Each head learns one target (``hindsight.common.family.HEAD_TARGETS``) taken from the label:
``y_entry`` ← ``y_entry``, ``sl_katr`` ← ``dd_katr``, ``rr_target`` ← ``runup_r``,
``offset_katr`` ← ``best_offset_katr``. A row's time is its signal's ``ts``; its label is
known only once the horizon's last bar closed, ``ts + horizon_bars × bar`` (:func:`horizon_end`),
which the splits' purge uses as the row's ``closed_at``, so no train row's label reaches
into a later block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from hindsight.common.family import HEAD_TARGETS
from hindsight.trainer.domain.rows import TrainingRow

__all__ = ["LABEL_FIELDS", "LabelledSignal", "bar_length", "horizon_end", "training_row"]

LABEL_FIELDS: Mapping[str, str] = {
    HEAD_TARGETS["entry"]: "y_entry",
    HEAD_TARGETS["risk"]: "dd_katr",
    HEAD_TARGETS["rr"]: "runup_r",
    HEAD_TARGETS["offset"]: "best_offset_katr",
}
"""Target name (as the family's frame names it) → the ``signal.labeled`` field it comes from."""

_TIMEFRAME = re.compile(r"^([1-9][0-9]{0,3})(m|h|d|w|mo)$")
_UNIT = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    # A month bar lasts 28 to 31 days: the longest, so a horizon never ends early.
    "mo": timedelta(days=31),
}


def bar_length(timeframe: str) -> timedelta:
    """The (longest) length of one bar of ``timeframe`` (``15m``, ``1h``, ``1d``, ``1mo``);
    ValueError naming it when it is not of that form."""
    match = _TIMEFRAME.match(timeframe)
    if match is None:
        raise ValueError(f"timeframe {timeframe!r} is not <n>m, <n>h, <n>d, <n>w or <n>mo")
    return int(match[1]) * _UNIT[match[2]]


def horizon_end(ts: datetime, timeframe: str, horizon_bars: int) -> datetime:
    """When the label of a signal at ``ts`` became known: its horizon's last bar closed."""
    return ts + horizon_bars * bar_length(timeframe)


@dataclass(frozen=True, slots=True)
class LabelledSignal:
    """One ``signal.features`` row with its ``signal.labeled`` label of one spec."""

    signal_id: str
    seq: int
    symbol: str
    timeframe: str
    side: str
    ts: datetime
    occurred_at: datetime
    features: Mapping[str, float | None]
    feature_schema_version: int
    entry_price: float | None
    label_spec: str
    revision: int
    horizon_bars: int
    y_entry: int
    realised_r: float
    runup_r: float
    dd_katr: float | None
    best_offset_katr: float | None
    liquidity_cluster: str | None

    def targets(self) -> dict[str, float | None]:
        """Each head's target (None where the label lacks it)."""
        values: dict[str, float | None] = {}
        for target, label_field in LABEL_FIELDS.items():
            value = getattr(self, label_field)
            values[target] = None if value is None else float(value)
        return values


def training_row(row: LabelledSignal) -> TrainingRow:
    """``row`` as the quality gate and the snapshot read it: ``y_entry`` as the result
    (1 = win, 0 = loss), the horizon's end as ``closed_at``, the label's ``realised_r``; the
    other targets and the cluster in ``extra``. ValueError for an unknown timeframe."""
    return TrainingRow(
        signal_id=row.signal_id,
        symbol=row.symbol,
        timeframe=row.timeframe,
        side=row.side,
        ts=row.ts,
        features=row.features,
        feature_schema_version=row.feature_schema_version,
        closed_at=horizon_end(row.ts, row.timeframe, row.horizon_bars),
        result="win" if row.y_entry == 1 else "loss",
        entry_price=row.entry_price,
        realised_r=row.realised_r,
        seq=row.seq,
        occurred_at=row.occurred_at,
        extra={**row.targets(), "liquidity_cluster": row.liquidity_cluster},
    )
