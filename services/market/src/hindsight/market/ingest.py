"""Bars in: the integrity gate, one multi-row write per batch, corrections audited, gaps
reported, derived series recomputed. Shared by ``bar.closed`` and ``hindsight bars import``.

The gate (:func:`~hindsight.market.domain.integrity.check_bar`) sees each bar with the
right ``previous``: for a new key, the series' latest bar (stored or accepted earlier in the
batch), so a bar older than the latest is "time going back"; for a key already stored
with other values (a correction), the bar stored before it. A key stored with the same
values is a duplicate and changes nothing. Series are locked (advisory, per series) for
the transaction, so two writers of one series take turns.

The derived series read the series' last ``CONTEXT_BARS`` bars from a
:class:`~hindsight.market.history.HistoryCache` when it is current (the table's newest bar
and last correction match it), else from the table; either way the same bars, so the same
values. The cache takes a batch's bars only after its transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import numpy as np

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import BarClosed
from hindsight.market.derived import CONTEXT_BARS, derive_columns
from hindsight.market.domain.bars import TIMEFRAMES, Bar
from hindsight.market.domain.indicators import INDICATOR_VERSION
from hindsight.market.domain.integrity import Violation, calendar_for, check_bar, find_gaps
from hindsight.market.history import History, HistoryCache
from hindsight.market.metrics import BAR_FIELDS, BAR_REJECTIONS, BARS, GAPS
from hindsight.market.storage import BarIn, GapRecord, Storage, StoredBar

__all__ = ["BarIngest", "BarsRejected", "IngestReport", "Rejected", "bar_from_event"]

logger = logging.getLogger(__name__)

Series = tuple[str, str]
OnStored = Callable[[set[Series]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A bar the gate refused, with every rule it broke."""

    item: BarIn
    violations: list[Violation]

    def describe(self) -> str:
        """``field: reason; field: reason`` (what the DLQ header and the import print)."""
        return "; ".join(f"{v.field}: {v.reason}" for v in self.violations)


@dataclass(slots=True)
class IngestReport:
    """What one batch did."""

    stored: int = 0
    duplicates: int = 0
    corrected: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    gaps: list[GapRecord] = field(default_factory=list)
    series: set[Series] = field(default_factory=set)


class BarsRejected(InvalidInputError):
    """Bars of a batch broke integrity rules: bad input, dead-lettered, never retried."""

    def __init__(self, rejected: Sequence[Rejected]) -> None:
        first = rejected[0]
        bar = first.item.bar
        where = f"bar {bar.symbol} {bar.timeframe} {bar.ts.isoformat()}"
        details = "; ".join(r.describe() for r in rejected)
        super().__init__(f"{details} ({where})")
        self.field = first.violations[0].field
        self.rejected = list(rejected)


def bar_from_event(event: BarClosed) -> BarIn:
    """The bar a ``bar.closed`` carries."""
    bar = Bar(
        symbol=event.symbol,
        timeframe=event.timeframe,
        ts=event.ts,
        open=event.open,
        high=event.high,
        low=event.low,
        close=event.close,
        volume=event.volume,
    )
    return BarIn(bar=bar, source=event.source, trades=event.trades, vwap=event.vwap)


@dataclass(slots=True)
class _SeriesGate:
    """The gate's view of one series during one batch."""

    latest: StoredBar | None
    existing: dict[datetime, StoredBar]
    accepted: dict[datetime, BarIn] = field(default_factory=dict)
    new_ts: list[datetime] = field(default_factory=list)
    corrections: list[tuple[StoredBar, BarIn]] = field(default_factory=list)

    newest: Bar | None = None
    """The latest new bar accepted in this batch (new bars only ever extend the series)."""

    def latest_bar(self) -> Bar | None:
        """The series' latest bar: accepted in this batch, else stored."""
        if self.newest is not None:
            return self.newest
        return None if self.latest is None else self.latest.bar


@dataclass(slots=True)
class _DerivedRows:
    """The derived series a batch writes, all its series together (one statement)."""

    keys: list[tuple[str, str, datetime]] = field(default_factory=list)
    atr14: list[float | None] = field(default_factory=list)
    ema21: list[float | None] = field(default_factory=list)
    rsi14: list[float | None] = field(default_factory=list)
    realised_vol20: list[float | None] = field(default_factory=list)


class BarIngest:
    """Gate and store bars; tell ``on_stored`` which series got new bars (after commit)."""

    def __init__(
        self,
        storage: Storage,
        *,
        calendars: Mapping[str, str] | None = None,
        on_stored: OnStored | None = None,
        history: HistoryCache | None = None,
    ) -> None:
        self.storage = storage
        self.calendars = dict(calendars or {})
        self.on_stored = on_stored
        self.history = HistoryCache() if history is None else history

    async def on_bars(self, events: list[BarClosed]) -> None:
        """``bar.closed`` batch handler: all or nothing, a bad bar fails the batch (the
        consumer then handles each event alone, so only the bad one is dead-lettered)."""
        await self.ingest([bar_from_event(e) for e in events], source="bar.closed", strict=True)

    async def ingest(self, items: Sequence[BarIn], *, source: str, strict: bool) -> IngestReport:
        """Gate and write ``items`` in one transaction. ``strict``: raise
        :class:`BarsRejected` (writing nothing) when any bar is bad; else store the good ones
        and report the bad ones."""
        report = IngestReport()
        committed: dict[Series, History] = {}
        async with self.storage.pool.acquire() as conn, conn.transaction():
            table = self.storage.bars
            by_series: dict[Series, list[BarIn]] = {}
            for item in items:
                by_series.setdefault((item.bar.symbol, item.bar.timeframe), []).append(item)
            await table.lock_series(conn, by_series)
            latest = await table.latest_of(conn, by_series)
            existing = await table.at_keys(
                conn, list({(*series, i.bar.ts) for series, its in by_series.items() for i in its})
            )
            gates: dict[Series, _SeriesGate] = {}
            for series, series_items in by_series.items():
                gate = _SeriesGate(
                    latest=latest.get(series),
                    existing={
                        i.bar.ts: existing[key]
                        for i in series_items
                        if (key := (*series, i.bar.ts)) in existing
                    },
                )
                gates[series] = gate
                for item in series_items:
                    await self._gate_one(conn, gate, item, report)
            if report.rejected and strict:
                self._count_rejected(report.rejected, source=source)
                raise BarsRejected(report.rejected)
            to_write = [item for gate in gates.values() for item in gate.accepted.values()]
            await table.upsert(conn, to_write)
            await table.audit(conn, [c for g in gates.values() for c in g.corrections])
            changed = {series: gate for series, gate in gates.items() if gate.accepted}
            marks = await table.correction_marks(conn, changed)
            derived = _DerivedRows()
            for series, gate in changed.items():
                report.series.add(series)
                report.gaps.extend(self._gaps(series, gate))
                committed[series] = await self._derive(
                    conn, series, gate, mark=marks[series], into=derived
                )
            await table.set_derived(
                conn,
                derived.keys,
                atr14=derived.atr14,
                ema21=derived.ema21,
                rsi14=derived.rsi14,
                realised_vol20=derived.realised_vol20,
                indicator_version=INDICATOR_VERSION,
            )
            await table.insert_gaps(conn, report.gaps)
        # Only now: a batch rolled back leaves the cache as the table is.
        for series, history in committed.items():
            self.history.put(series, history)
        self._count(report, source=source)
        if report.series and self.on_stored is not None:
            await self.on_stored(report.series)
        return report

    async def _gate_one(
        self, conn: asyncpg.Connection, gate: _SeriesGate, item: BarIn, report: IngestReport
    ) -> None:
        bar = item.bar
        earlier = gate.accepted.get(bar.ts)  # the same key twice in one batch: the later wins
        stored = gate.existing.get(bar.ts)
        known = earlier.values() if earlier is not None else None
        if known is None and stored is not None:
            known = stored.values()
        if known is not None:
            if item.values() == known:
                report.duplicates += 1
                return
            violations = check_bar(bar, previous=await self._before(conn, gate, bar))
            if violations:
                report.rejected.append(Rejected(item, violations))
                return
            if stored is not None:
                gate.corrections.append((stored, item))
                report.corrected += 1
            gate.accepted[bar.ts] = item
            return
        violations = check_bar(bar, previous=gate.latest_bar())
        if violations:
            report.rejected.append(Rejected(item, violations))
            return
        gate.accepted[bar.ts] = item
        gate.new_ts.append(bar.ts)
        gate.newest = bar
        report.stored += 1

    async def _before(self, conn: asyncpg.Connection, gate: _SeriesGate, bar: Bar) -> Bar | None:
        """The series' bar before ``bar.ts``: stored or accepted in this batch."""
        stored = await self.storage.bars.before(conn, bar.symbol, bar.timeframe, bar.ts)
        candidates = [b.bar for ts, b in gate.accepted.items() if ts < bar.ts]
        if stored is not None:
            candidates.append(stored.bar)
        return max(candidates, key=lambda b: b.ts, default=None)

    def _gaps(self, series: Series, gate: _SeriesGate) -> list[GapRecord]:
        symbol, timeframe = series
        if timeframe not in TIMEFRAMES or not gate.new_ts:
            return []
        times = sorted(gate.new_ts)
        if gate.latest is not None and gate.latest.bar.ts < times[0]:
            times.insert(0, gate.latest.bar.ts)
        calendar = calendar_for(symbol, overrides=self.calendars)
        found = [
            GapRecord(symbol, timeframe, g.after, g.before, g.missing)
            for g in find_gaps(times, timeframe, calendar=calendar)
        ]
        for gap in found:
            logger.warning(
                "gap in %s %s: %d bar(s) missing between %s and %s (%s calendar; not filled)",
                symbol,
                timeframe,
                gap.missing,
                gap.after.isoformat(),
                gap.before.isoformat(),
                calendar,
                extra={"symbol": symbol, "timeframe": timeframe, "missing": gap.missing},
            )
        return found

    def _current(self, series: Series, gate: _SeriesGate, mark: int) -> History | None:
        """The cached history, when it is the table's as this batch found it."""
        history = self.history.get(series)
        if history is None:
            return None
        latest = gate.latest
        if (
            latest is None
            or latest.bar.ts != history.newest
            or mark != history.correction_mark
            or history.newest_values() != latest.values()[:5]
        ):
            self.history.drop(series)  # another writer, or a batch whose commit failed late
            return None
        return history

    async def _derive(
        self,
        conn: asyncpg.Connection,
        series: Series,
        gate: _SeriesGate,
        *,
        mark: int,
        into: _DerivedRows,
    ) -> History:
        """Recompute the derived series of every bar from the batch's first new or corrected
        bar to the series' end, from the ``CONTEXT_BARS`` bars before it; returns the
        series' history after this batch (for the cache, once committed)."""
        symbol, timeframe = series
        since = min(gate.accepted)
        history = self._current(series, gate, mark)
        if history is not None and since > history.newest:
            # Only new bars, all after the cached ones: the tail is the cache plus them.
            fresh = sorted(gate.accepted.values(), key=lambda item: item.bar.ts)
            rows = np.array(
                [(i.bar.open, i.bar.high, i.bar.low, i.bar.close, i.bar.volume) for i in fresh],
                dtype=np.float64,
            )
            ts = [*history.ts, *(i.bar.ts for i in fresh)]
            o, h, lo, c, v = (
                np.concatenate((old, rows[:, k])) for k, old in enumerate(history.columns())
            )
        else:
            # A first batch, a correction, or a stale cache: read the tail, as always.
            ts, values = await self.storage.bars.tail_columns(
                conn, symbol, timeframe, since=since, context=CONTEXT_BARS
            )
            o, h, lo, c, v = (values[:, k] for k in range(5))
        first = next(i for i, t in enumerate(ts) if t >= since)
        columns = derive_columns(h, lo, c).last(len(ts) - first)
        into.keys.extend((symbol, timeframe, t) for t in ts[first:])
        into.atr14.extend(columns.atr14)
        into.ema21.extend(columns.ema21)
        into.rsi14.extend(columns.rsi14)
        into.realised_vol20.extend(columns.realised_vol20)
        return History.last_of(ts, (o, h, lo, c, v), correction_mark=mark)

    @classmethod
    def _count(cls, report: IngestReport, *, source: str) -> None:
        BARS.labels(source, "stored").inc(report.stored)
        BARS.labels(source, "duplicate").inc(report.duplicates)
        BARS.labels(source, "corrected").inc(report.corrected)
        cls._count_rejected(report.rejected, source=source)
        for gap in report.gaps:
            GAPS.labels(gap.timeframe).inc(gap.missing)

    @staticmethod
    def _count_rejected(rejected: Sequence[Rejected], *, source: str) -> None:
        BARS.labels(source, "rejected").inc(len(rejected))
        for one in rejected:
            for violation in one.violations:
                name = violation.field if violation.field in BAR_FIELDS else "other"
                BAR_REJECTIONS.labels(name).inc()
