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
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Literal

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
from hindsight.market.storage import OUTBOX, PendingSignal, Storage

__all__ = ["SERVICE_SOURCE", "BackLabeler", "labeled_event"]

logger = logging.getLogger(__name__)

SERVICE_SOURCE = "market"
Series = tuple[str, str]
_CHUNK = 2000  # pending signals of one series labelled per transaction


def labeled_event(
    signal: PendingSignal, labels: SignalLabels, *, label_spec: str, cluster: str | None
) -> SignalLabeled:
    """The ``signal.labeled`` event of one label row."""
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
        self, symbol: str, timeframe: str, pending: Sequence[PendingSignal]
    ) -> tuple[list[tuple[PendingSignal, SignalLabels]], list[tuple[PendingSignal, str]]]:
        before = self.spec.bars_before_needed()
        after = self.spec.bars_after_needed()
        stored = await self.storage.bars.tail(
            self.storage.pool, symbol, timeframe, since=pending[0].ts, context=before + 1
        )
        bars = [b.bar for b in stored]
        opens = [b.ts for b in bars]
        tf = timeframe_of(timeframe)
        closes = [tf.end(ts) for ts in opens]
        labelled: list[tuple[PendingSignal, SignalLabels]] = []
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
            labelled.append((signal, labels))
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

    async def _save(self, labelled: Sequence[tuple[PendingSignal, SignalLabels]]) -> int:
        clusters: dict[str, str | None] = {}
        for signal, _ in labelled:
            if signal.symbol not in clusters:
                record = await self.storage.bars.cluster(self.storage.pool, signal.symbol)
                clusters[signal.symbol] = None if record is None else record.cluster
        rows = [(s, labels, clusters[s.symbol]) for s, labels in labelled]
        async with self.storage.pool.acquire() as conn, conn.transaction():
            new = await self.storage.signals.save_labels(conn, rows)
            for signal, labels, cluster in rows:
                if signal.signal_id in new:
                    event = labeled_event(
                        signal, labels, label_spec=self.spec_hash, cluster=cluster
                    )
                    await OUTBOX.add(conn, event)
        LABELS.labels("labeled").inc(len(new))
        if new:
            self.relay.notify()
        return len(new)

    async def _fail_all(self, symbol: str, timeframe: str, error: str) -> int:
        pending = await self.storage.signals.pending(
            self.storage.pool, symbol, timeframe, label_spec=self.spec_hash, limit=_CHUNK
        )
        for signal in pending:
            await self.storage.signals.fail(self.storage.pool, signal, error)
            LABELS.labels("failed").inc(1)
        return 0

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
                if loop.time() >= next_sweep:
                    self._dirty.clear()  # the sweep covers them
                    await self.sweep()
                    next_sweep = loop.time() + self.sweep_every_s
                while self._dirty:
                    symbol, timeframe = self._dirty.pop()
                    await self.label_series(symbol, timeframe)
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
