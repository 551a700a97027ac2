"""OHLCV bars and the timeframes the market service knows.

A bar is keyed by ``(symbol, timeframe, ts)`` where ``ts`` is the bar's OPEN time, tz-aware
UTC; the bar covers ``[ts, ts + timeframe)`` and is known once it has closed, at ``end``.
A ``Bar`` holds what it is given: the integrity rules (``integrity.check_bar``) decide
whether a bar is acceptable, so that a bad bar can still be built and reported field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["TIMEFRAMES", "Bar", "timeframe_delta"]

TIMEFRAMES: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
}


def timeframe_delta(tf: str) -> timedelta:
    """The length of one bar of timeframe ``tf``; ``ValueError`` naming it when unknown."""
    try:
        return TIMEFRAMES[tf]
    except KeyError:
        known = ", ".join(TIMEFRAMES)
        raise ValueError(f"timeframe {tf!r} is not one of {known}") from None


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar of one series; ``ts`` is the bar's open time (tz-aware UTC)."""

    symbol: str
    timeframe: str
    ts: datetime  # bar OPEN time, tz-aware UTC
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def end(self) -> datetime:
        """When the bar closed: ``ts + timeframe`` (``ValueError`` for an unknown timeframe)."""
        return self.ts + timeframe_delta(self.timeframe)
