"""Typed records that cross the storage boundary (frozen dataclasses)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from hindsight.market.domain.bars import Bar
from hindsight.market.domain.labels import SignalLabels

__all__ = [
    "BarIn",
    "BarValues",
    "ClusterRecord",
    "CorrectionMark",
    "Derived",
    "GapRecord",
    "LabelRecord",
    "LabelRow",
    "PendingSignal",
    "StoredBar",
    "StoredLabel",
]


@dataclass(frozen=True, slots=True)
class BarIn:
    """A bar to store: the domain bar plus what the event may add, and who sent it."""

    bar: Bar
    source: str
    trades: int | None = None
    vwap: float | None = None

    def values(self) -> BarValues:
        """What a correction may change: OHLCV, trades and vwap."""
        return _values(self.bar, self.trades, self.vwap)


BarValues = tuple[float, float, float, float, float, int | None, float | None]


def _values(bar: Bar, trades: int | None, vwap: float | None) -> BarValues:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, trades, vwap)


@dataclass(frozen=True, slots=True)
class Derived:
    """The derived series of one bar, from that bar and earlier ones only (None: warm-up)."""

    atr14: float | None
    ema21: float | None
    rsi14: float | None
    realised_vol20: float | None
    indicator_version: str | None

    @staticmethod
    def clean(value: float) -> float | None:
        """NaN (warm-up) as None."""
        return None if math.isnan(value) else float(value)


@dataclass(frozen=True, slots=True)
class StoredBar:
    """A bar as stored, with its derived series."""

    bar: Bar
    trades: int | None
    vwap: float | None
    derived: Derived

    def values(self) -> BarValues:
        """OHLCV, trades and vwap as stored."""
        return _values(self.bar, self.trades, self.vwap)


@dataclass(frozen=True, slots=True)
class GapRecord:
    """Bars the calendar expected between two stored bars of a series."""

    symbol: str
    timeframe: str
    after: datetime
    before: datetime
    missing: int


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """A symbol's liquidity cluster and the dollar volume it was ranked by."""

    symbol: str
    cluster: str
    dollar_volume: float
    rule_version: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PendingSignal:
    """A buy or sell signal waiting for the bars of its horizon (one label spec)."""

    signal_id: str
    label_spec: str
    symbol: str
    timeframe: str
    side: str
    ts: datetime
    entry_price: float | None


@dataclass(frozen=True, slots=True)
class LabelRow:
    """A signal's labels to store, with the open times of the first and last bars they read
    (ATR history through horizon): a correction between them relabels the signal."""

    signal: PendingSignal
    labels: SignalLabels
    window_start: datetime
    window_end: datetime
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class StoredLabel:
    """A stored label: the signal it labels (as it was queued), its labels as stored (JSON
    object, the ``SignalLabels`` fields) and its revision (0: never relabelled)."""

    signal: PendingSignal
    labels: dict[str, object]
    revision: int


@dataclass(frozen=True, slots=True)
class CorrectionMark:
    """A corrected bar the Back-Labeler has not checked its labels against yet."""

    id: int
    symbol: str
    timeframe: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class LabelRecord:
    """A stored label as the API shows it: one signal under one label spec."""

    signal_id: str
    label_spec: str
    revision: int
    symbol: str
    timeframe: str
    side: str
    signal_ts: datetime
    labels: SignalLabels
    liquidity_cluster: str | None
    labeled_at: datetime
