"""OHLCV bars and the timeframes the market service knows.

A bar is keyed by ``(symbol, timeframe, ts)`` where ``ts`` is the bar's OPEN time, tz-aware
UTC; the bar covers ``[ts, ts + timeframe)`` and is known once it has closed, at ``end``.
A ``Bar`` holds what it is given: the integrity rules (``integrity.check_bar``) decide
whether a bar is acceptable, so that a bad bar can still be built and reported field by field.

Timeframe names are a count and a lower-case unit: ``m`` minutes, ``h`` hours, ``d`` days,
``mo`` calendar months. ``1mo`` is the one calendar timeframe: its bars open on the first of
a month at 00:00 UTC and close at the first of the next, so a bar lasts 28 to 31 days. It is
``1mo`` rather than the ``1M`` some feeds use because ``1M`` would differ from ``1m`` (one
minute) only by case. Arithmetic on bar times goes through :class:`Timeframe` (``end``,
``shift``), never through a fixed length, so monthly bars need no special case elsewhere.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["TIMEFRAMES", "Bar", "Timeframe", "month_start", "timeframe_delta", "timeframe_of"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Timeframe:
    """A bar length: a fixed ``timedelta``, or whole calendar ``months``.

    Ordered by ``nominal`` (the fixed length, or the longest month a calendar timeframe can
    last), so "longest bars first" sorts calendar timeframes after every fixed one.
    """

    nominal: timedelta
    name: str = field(compare=False)
    months: int = field(default=0, compare=False)
    """Calendar months per bar (0: a fixed length of ``nominal``)."""

    @property
    def is_calendar(self) -> bool:
        """Whether bars follow the calendar (months) rather than a fixed length."""
        return self.months > 0

    def shift(self, ts: datetime, n: int = 1) -> datetime:
        """``ts`` moved by ``n`` bars (negative: back). Months keep the day and time of day,
        clamped to the target month's last day (bar opens, on the 1st, are never clamped)."""
        if not self.is_calendar:
            return ts + n * self.nominal
        index = ts.year * 12 + ts.month - 1 + n * self.months
        year, month = divmod(index, 12)
        day = min(ts.day, calendar.monthrange(year, month + 1)[1])
        return ts.replace(year=year, month=month + 1, day=day)

    def end(self, ts: datetime) -> datetime:
        """When a bar opening at ``ts`` closes."""
        return self.shift(ts, 1)

    def is_aligned(self, ts: datetime, *, offset: timedelta = timedelta(0)) -> bool:
        """Whether a bar may open at ``ts`` (tz-aware): fixed lengths count whole bars from
        the Unix epoch (00:00 UTC) plus ``offset``; months open on the 1st at 00:00 UTC plus
        ``offset``."""
        if not self.is_calendar:
            return not (ts - _EPOCH - offset) % self.nominal
        t = (ts - offset).astimezone(UTC)
        return t == month_start(t) and (t.year * 12 + t.month - 1) % self.months == 0

    def opens_between(self, after: datetime, before: datetime) -> list[datetime]:
        """The bar opens strictly between two bar opens ``after < before`` of one series."""
        opens: list[datetime] = []
        t = self.shift(after)
        while t < before:
            opens.append(t)
            t = self.shift(t)
        return opens

    def latest_open_closed_by(self, end: datetime) -> datetime:
        """The latest open time ``ts`` with ``end(ts) <= end`` for bars on the grid (for a
        fixed length any ``ts <= end - nominal``)."""
        if not self.is_calendar:
            return end - self.nominal
        first = month_start(end.astimezone(UTC))
        index = first.year * 12 + first.month - 1
        index -= index % self.months  # the grid's month at or before ``end``
        return self.shift(first.replace(year=index // 12, month=index % 12 + 1), -1)


def month_start(ts: datetime) -> datetime:
    """00:00 of the first day of ``ts``'s month (same timezone)."""
    return ts.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _fixed(name: str, length: timedelta) -> Timeframe:
    return Timeframe(nominal=length, name=name)


TIMEFRAMES: dict[str, Timeframe] = {
    "1m": _fixed("1m", timedelta(minutes=1)),
    "5m": _fixed("5m", timedelta(minutes=5)),
    "15m": _fixed("15m", timedelta(minutes=15)),
    "30m": _fixed("30m", timedelta(minutes=30)),
    "1h": _fixed("1h", timedelta(hours=1)),
    "4h": _fixed("4h", timedelta(hours=4)),
    "1d": _fixed("1d", timedelta(days=1)),
    "1mo": Timeframe(nominal=timedelta(days=31), name="1mo", months=1),
}


def timeframe_of(tf: str) -> Timeframe:
    """The timeframe named ``tf``; ``ValueError`` naming it when unknown."""
    try:
        return TIMEFRAMES[tf]
    except KeyError:
        known = ", ".join(TIMEFRAMES)
        raise ValueError(f"timeframe {tf!r} is not one of {known}") from None


def timeframe_delta(tf: str) -> timedelta:
    """The fixed length of one bar of timeframe ``tf``; ``ValueError`` naming it when unknown
    or a calendar timeframe (whose bars have no fixed length: use :class:`Timeframe`)."""
    found = timeframe_of(tf)
    if found.is_calendar:
        raise ValueError(
            f"timeframe {tf!r} follows the calendar (bars of 28 to 31 days): no fixed length"
        )
    return found.nominal


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
        """When the bar closed (``ValueError`` for an unknown timeframe)."""
        return timeframe_of(self.timeframe).end(self.ts)
