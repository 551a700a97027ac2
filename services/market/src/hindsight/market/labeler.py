"""The Back-Labeler: labels every buy or sell signal once the bars of its horizon exist.

``signal.features`` events are kept as pending rows (per label spec); "hold" signals are
skipped and counted. A series is checked when bars of it are stored (``bars_arrived``),
when signals of it arrive, at start and every ``sweep_every_s``. A check loads the series'
bars once, computes :func:`~hindsight.market.domain.labels.label_signal` for each pending
signal whose history and horizon are complete, and in ONE transaction inserts the label
rows (``ON CONFLICT DO NOTHING`` on ``(signal_id, label_spec)``), queues a
``signal.labeled`` in the outbox for each row that is new, and deletes the pending rows.
A kill before the commit leaves the signals pending (labelled again, identically, after
the restart); after it, the outbox relay publishes them. So each (signal, spec) gets one
label row and one event (JetStream drops a re-published one by its ``Nats-Msg-Id``).

A signal whose history is short while bars after it exist can never be labelled (a bar
older than the series' latest is refused by the gate): it is marked failed, with why.

Relabelling: a label row keeps the open times of the first and last bars it read (its ATR
history through its horizon) and the signal's entry price. The market audits every
corrected bar (``bar_corrections``); after each pass the labeler takes the corrections it
has not checked yet, recomputes every label of its spec whose window holds a corrected bar,
and in ONE transaction replaces the rows whose labels changed (``revision`` + 1), queues a
``signal.labeled`` with that ``label_revision`` for each (its ``Nats-Msg-Id`` carries the
revision, so JetStream keeps it) and marks the corrections checked. A kill before the commit
leaves them unchecked: the next pass does the same work again. A correction that leaves
the labels as they were (volume alone, say) publishes nothing; one after which the signal
cannot be labelled keeps the old label (logged and counted). Labels of another spec are
left as they are: each labeler relabels its own spec's labels.

A changed spec (a new hash) relabels, never mixes: on its first pass the labeler queues
under its hash every signal known under another one (labelled or pending) that it has not
labelled, then labels them like any other; the old spec's labels stay, under their hash.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import asdict, replace
from typing import Literal

import asyncpg

from hindsight.common.events import SignalFeatures, SignalLabeled
from hindsight.common.outbox import OutboxRelay
from hindsight.common.tasks import BackgroundTask
from hindsight.market.domain.bars import TIMEFRAMES, Bar, timeframe_of
from hindsight.market.domain.labels import (
    LabelError,
    LabelSpec,
    NotEnoughBars,
    SignalLabels,
    label_signal,
)
from hindsight.market.metrics import LABELS, OUTBOX_BACKLOG, PENDING_SIGNALS, SIGNALS
from hindsight.market.storage import (
    OUTBOX,
    CorrectionMark,
    LabelRow,
    PendingSignal,
    Storage,
    StoredLabel,
)

__all__ = ["SERVICE_SOURCE", "BackLabeler", "labeled_event"]

logger = logging.getLogger(__name__)

SERVICE_SOURCE = "market"
Series = tuple[str, str]
_CHUNK = 2000  # pending signals of one series labelled per transaction


def labeled_event(
    signal: PendingSignal,
    labels: SignalLabels,
    *,
    label_spec: str,
    cluster: str | None,
    revision: int = 0,
) -> SignalLabeled:
    """The ``signal.labeled`` event of one label row (``revision``: its label revision)."""
    return SignalLabeled.create(
        source=SERVICE_SOURCE,
        signal_id=signal.signal_id,
        label_spec=label_spec,
        horizon_bars=labels.horizon_bars,
        runup_r=labels.runup_r,
        drawdown_r=labels.drawdown_r,
        realised_r=labels.realised_r,
        y_entry=labels.y_entry,
        t_hit_tp=labels.t_hit_tp,
        t_hit_sl=labels.t_hit_sl,
        mfe_atr=labels.mfe_atr,
        mae_atr=labels.mae_atr,
        mfe_r=labels.mfe_r,
        mae_r=labels.mae_r,
        dd_katr=labels.dd_katr,
        best_offset_katr=labels.best_offset_katr,
        liquidity_cluster=cluster,
        symbol=signal.symbol,
        timeframe=signal.timeframe,
        label_revision=revision,
    )


class BackLabeler:
    """Pending signals in, ``signal.labeled`` out (through the outbox); a service part."""

    def __init__(
        self,
        storage: Storage,
        relay: OutboxRelay,
        *,
        spec: LabelSpec,
        sweep_every_s: float,
    ) -> None:
        self.storage = storage
        self.relay = relay
        self.spec = spec
        self.spec_hash = spec.spec_hash()
        self.sweep_every_s = sweep_every_s
        self._dirty: set[Series] = set()
        self._wake = asyncio.Event()
        self._task = BackgroundTask("back-labeler")
        self._adopted = False

    # --- inputs ---------------------------------------------------------------------------

    async def on_signals(self, events: list[SignalFeatures]) -> None:
        """``signal.features`` batch handler: queue buy/sell signals, skip holds."""
        queued = [
            PendingSignal(
                signal_id=e.signal_id,
                label_spec=self.spec_hash,
                symbol=e.symbol,
                timeframe=e.timeframe,
                side=e.side,
                ts=e.ts,
                entry_price=e.entry_price,
            )
            for e in events
            if e.side != "hold"
        ]
        await self.storage.signals.add_pending(self.storage.pool, queued)
        SIGNALS.labels("hold_skipped").inc(len(events) - len(queued))
        SIGNALS.labels("queued").inc(len(queued))
        self.mark_dirty({(s.symbol, s.timeframe) for s in queued})

    async def bars_arrived(self, series: set[Series]) -> None:
        """Bars of these series were stored: check their pending signals."""
        self.mark_dirty(series)

    def mark_dirty(self, series: Iterable[Series]) -> None:
        """Check these series soon (in the background task)."""
        added = set(series)
        if added:
            self._dirty |= added
            self._wake.set()

    # --- the work -------------------------------------------------------------------------

    async def label_series(self, symbol: str, timeframe: str) -> int:
        """Label every pending signal of the series whose bars are complete; how many."""
        if timeframe not in TIMEFRAMES:
            return await self._fail_all(symbol, timeframe, f"timeframe {timeframe!r} unknown")
        done = 0
        while True:
            pending = await self.storage.signals.pending(
                self.storage.pool, symbol, timeframe, label_spec=self.spec_hash, limit=_CHUNK
            )
            if not pending:
                return done
            labelled, failed = await self._compute(symbol, timeframe, pending)
            for signal, error in failed:
                await self.storage.signals.fail(self.storage.pool, signal, error)
                LABELS.labels("failed").inc()
                logger.warning(
                    "signal %s can never be labelled: %s",
                    signal.signal_id,
                    error,
                    extra={"signal_id": signal.signal_id},
                )
            if labelled:
                done += await self._save(labelled)
            if len(pending) < _CHUNK or not (labelled or failed):
                return done

    async def _compute(
        self,
        symbol: str,
        timeframe: str,
        pending: Sequence[PendingSignal],
        *,
        conn: asyncpg.Connection | None = None,
    ) -> tuple[list[LabelRow], list[tuple[PendingSignal, str]]]:
        """Labels of ``pending`` (oldest first) from the stored bars, with the windows they
        read; and the signals that can never be labelled, with why."""
        before = self.spec.bars_before_needed()
        after = self.spec.bars_after_needed()
        stored = await self.storage.bars.tail(
            self.storage.pool if conn is None else conn,
            symbol,
            timeframe,
            since=pending[0].ts,
            context=before + 1,
        )
        bars = [b.bar for b in stored]
        opens = [b.ts for b in bars]
        tf = timeframe_of(timeframe)
        closes = [tf.end(ts) for ts in opens]
        labelled: list[LabelRow] = []
        failed: list[tuple[PendingSignal, str]] = []
        for signal in pending:
            closed = bisect.bisect_right(closes, signal.ts)  # bars closed by the signal
            history = bars[max(0, closed - before) : closed]
            first_future = bisect.bisect_left(opens, signal.ts)
            future = bars[first_future : first_future + after]
            try:
                labels = self._label(signal, history, future)
            except NotEnoughBars as exc:
                if len(history) < before and future:
                    failed.append((signal, str(exc)))  # history cannot grow any more
                continue  # else: waits for its horizon
            except LabelError as exc:
                failed.append((signal, str(exc)))
                continue
            labelled.append(
                LabelRow(
                    signal=signal,
                    labels=labels,
                    window_start=history[-before].ts,
                    window_end=future[after - 1].ts,
                )
            )
        return labelled, failed

    def _label(
        self, signal: PendingSignal, history: Sequence[Bar], future: Sequence[Bar]
    ) -> SignalLabels:
        side: Literal["buy", "sell"] = "buy" if signal.side == "buy" else "sell"
        return label_signal(
            side=side,
            signal_ts=signal.ts,
            entry_price=signal.entry_price,
            history=history,
            future=future,
            spec=self.spec,
        )

    async def _clusters(self, rows: Sequence[LabelRow]) -> list[LabelRow]:
        """``rows`` with their symbol's current liquidity cluster."""
        clusters: dict[str, str | None] = {}
        for row in rows:
            if row.signal.symbol not in clusters:
                record = await self.storage.bars.cluster(self.storage.pool, row.signal.symbol)
                clusters[row.signal.symbol] = None if record is None else record.cluster
        return [replace(row, cluster=clusters[row.signal.symbol]) for row in rows]

    async def _save(self, labelled: Sequence[LabelRow]) -> int:
        rows = await self._clusters(labelled)
        async with self.storage.pool.acquire() as conn, conn.transaction():
            new = await self.storage.signals.save_labels(conn, rows)
            for row in rows:
                if row.signal.signal_id in new:
                    event = labeled_event(
                        row.signal, row.labels, label_spec=self.spec_hash, cluster=row.cluster
                    )
                    await OUTBOX.add(conn, event)
        LABELS.labels("labeled").inc(len(new))
        if new:
            self.relay.notify()
        return len(new)

    async def relabel_corrections(self) -> int:
        """Relabel the labels that read a corrected bar not checked yet; how many changed."""
        done = 0
        while True:
            async with self.storage.pool.acquire() as conn, conn.transaction():
                marks = await self.storage.signals.unchecked_corrections(conn, limit=_CHUNK)
                if not marks:
                    return done
                by_series: dict[Series, list[CorrectionMark]] = {}
                for mark in marks:
                    by_series.setdefault((mark.symbol, mark.timeframe), []).append(mark)
                changed = 0
                for (symbol, timeframe), series_marks in by_series.items():
                    changed += await self._relabel_series(conn, symbol, timeframe, series_marks)
                await self.storage.signals.mark_checked(conn, [m.id for m in marks])
            done += changed
            if changed:
                self.relay.notify()
            if len(marks) < _CHUNK:
                return done

    async def _relabel_series(
        self,
        conn: asyncpg.Connection,
        symbol: str,
        timeframe: str,
        marks: Sequence[CorrectionMark],
    ) -> int:
        if timeframe not in TIMEFRAMES:
            return 0
        stored = await self.storage.signals.labels_reading(
            conn, symbol, timeframe, label_spec=self.spec_hash, times=[m.ts for m in marks]
        )
        if not stored:
            return 0
        by_id: dict[str, StoredLabel] = {s.signal.signal_id: s for s in stored}
        labelled, failed = await self._compute(
            symbol, timeframe, [s.signal for s in stored], conn=conn
        )
        for signal, error in failed:
            LABELS.labels("relabel_failed").inc()
            logger.warning(
                "signal %s kept its label: after a corrected bar it cannot be labelled: %s",
                signal.signal_id,
                error,
                extra={"signal_id": signal.signal_id},
            )
        changed = [r for r in labelled if asdict(r.labels) != by_id[r.signal.signal_id].labels]
        LABELS.labels("relabel_unchanged").inc(len(labelled) - len(changed))
        if not changed:
            return 0
        rows = [
            (row, by_id[row.signal.signal_id].revision + 1) for row in await self._clusters(changed)
        ]
        await self.storage.signals.replace_labels(conn, rows)
        for row, revision in rows:
            event = labeled_event(
                row.signal,
                row.labels,
                label_spec=self.spec_hash,
                cluster=row.cluster,
                revision=revision,
            )
            await OUTBOX.add(conn, event)
        LABELS.labels("relabeled").inc(len(rows))
        logger.info(
            "relabelled %d signal(s) of %s %s after %d corrected bar(s)",
            len(rows),
            symbol,
            timeframe,
            len(marks),
            extra={"symbol": symbol, "timeframe": timeframe},
        )
        return len(rows)

    async def _fail_all(self, symbol: str, timeframe: str, error: str) -> int:
        pending = await self.storage.signals.pending(
            self.storage.pool, symbol, timeframe, label_spec=self.spec_hash, limit=_CHUNK
        )
        for signal in pending:
            await self.storage.signals.fail(self.storage.pool, signal, error)
            LABELS.labels("failed").inc(1)
        return 0

    async def adopt(self) -> int:
        """Queue under this spec every signal labelled or pending under another; how many."""
        queued = await self.storage.signals.adopt(self.storage.pool, label_spec=self.spec_hash)
        SIGNALS.labels("adopted").inc(queued)
        if queued:
            logger.info(
                "label spec %s: %d signal(s) known under other specs queued to label again",
                self.spec_hash,
                queued,
            )
        return queued

    async def sweep(self) -> int:
        """Check every series with a pending signal once; labels made."""
        series = await self.storage.signals.pending_series(self.storage.pool)
        done = 0
        for symbol, timeframe in series:
            done += await self.label_series(symbol, timeframe)
        await self.refresh_gauges()
        return done

    async def refresh_gauges(self) -> None:
        """The pending and outbox gauges."""
        waiting, failed = await self.storage.signals.count_pending(self.storage.pool)
        PENDING_SIGNALS.labels("waiting").set(waiting)
        PENDING_SIGNALS.labels("failed").set(failed)
        OUTBOX_BACKLOG.set(await OUTBOX.backlog(self.storage.pool))

    # --- the part -------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            try:
                if not self._adopted:
                    await self.adopt()
                    self._adopted = True
                if loop.time() >= next_sweep:
                    self._dirty.clear()  # the sweep covers them
                    await self.sweep()
                    next_sweep = loop.time() + self.sweep_every_s
                while self._dirty:
                    symbol, timeframe = self._dirty.pop()
                    await self.label_series(symbol, timeframe)
                await self.relabel_corrections()
                await self.refresh_gauges()
            except Exception:  # database away: keep trying, the signals are durable
                logger.exception("back-labeler pass failed")
            self._wake.clear()
            if self._dirty:
                continue
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_sweep - loop.time()))

    async def start(self) -> None:
        """Label in the background; the first pass sweeps what a previous process left."""
        self._task.start(self._run())

    async def stop(self) -> None:
        """Stop; pending signals stay pending for the next start."""
        await self._task.stop()
