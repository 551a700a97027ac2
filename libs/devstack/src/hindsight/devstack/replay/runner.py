"""Play the plan: publish events and call the gateway bar by bar, resumably.

Per signal (at its bar): ``signal.features``, gateway ``Score``, two ``png.created``
(original, annotated), ``json.created`` trade_meta (open) and llm_suggestion. Per closed
trade (at its exit bar): ``signal.outcome`` and ``json.created`` trade_meta (closed).
Publishes are pipelined in order with at most ``max_in_flight`` unacknowledged; the
state file moves forward only after every publish up to that bar was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from hindsight.common.broker import STREAM
from hindsight.common.events import (
    Event,
    JsonCreated,
    PngCreated,
    SignalFeatures,
    SignalOutcome,
    format_utc,
)

from .chart import render_chart, write_png
from .data import Bars, load_bars
from .features import FEATURE_SCHEMA_VERSION
from .plan import Trade, plan_trades
from .settings import ReplaySettings
from .state import ReplayState, load_state, save_state, state_file
from .suggestion import suggest

__all__ = ["SOURCE", "ReplayCounters", "replay", "run_replay"]

logger = logging.getLogger(__name__)

SOURCE = "hindsight-replay"
CHART_AUTHOR = "replay-chart-renderer"
_CHECKPOINT_S = 1.0
_ACK_TIMEOUT_S = 30.0


@dataclass
class ReplayCounters:
    """Live counters of one replay; ``line()`` is the compact status line."""

    run_id: str = ""
    planned_signals: int = 0
    bars_total: int = 0
    bars: int = 0
    signals: int = 0
    scored: int = 0
    fallbacks: int = 0
    score_failures: int = 0
    outcomes: int = 0
    pngs: int = 0
    jsons: int = 0
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    """Actions skipped because a previous run of this run id did them."""
    finished: bool = False
    started: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        pct = 100.0 * self.bars / self.bars_total if self.bars_total else 0.0
        state = "done" if self.finished else f"{pct:.0f}%"
        return (
            f"replay {self.run_id} {state}: bars {self.bars}/{self.bars_total} "
            f"signals {self.signals}/{self.planned_signals} scored {self.scored} "
            f"(fallback {self.fallbacks}, failed {self.score_failures}) "
            f"outcomes {self.outcomes} png {self.pngs} json {self.jsons} "
            f"resumed-skip {self.skipped} {time.monotonic() - self.started:.0f}s"
        )


@dataclass(frozen=True, slots=True)
class _Action:
    kind: Literal["open", "close"]
    trade: Trade

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.trade.signal_id}"


class _Publisher:
    """Ordered, pipelined JetStream publishes with a bound on unacknowledged ones."""

    def __init__(self, js: Any, counters: ReplayCounters) -> None:
        self._js = js
        self._counters = counters
        self._pending: list[asyncio.Future[Any]] = []

    async def publish(self, event: Event) -> None:
        headers = {"Nats-Msg-Id": event.message_id(), "content-type": "application/json"}
        future = await self._js.publish_async(
            event.subject, event.to_json_bytes(), stream=STREAM, headers=headers
        )
        self._pending.append(future)
        if isinstance(event, PngCreated):
            self._counters.pngs += 1
        elif isinstance(event, JsonCreated):
            self._counters.jsons += 1

    async def flush(self) -> None:
        """Wait for every pending ack; raise when one failed or none came in time."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        acks = await asyncio.wait_for(asyncio.gather(*pending), timeout=_ACK_TIMEOUT_S)
        for ack in acks:
            if ack.duplicate:
                self._counters.duplicates += 1
            else:
                self._counters.stored += 1


class _Scorer:
    """The trading engine's Score call to the gateway; failures are counted, never raised."""

    def __init__(self, target: str, timeout_s: float, counters: ReplayCounters) -> None:
        import grpc

        from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

        self._pb2 = scoring_pb2
        self._channel = grpc.aio.insecure_channel(target)
        self._stub = scoring_pb2_grpc.ScoringStub(self._channel)
        self._target = target
        self._timeout = timeout_s
        self._counters = counters

    async def score(self, trade: Trade) -> None:
        import grpc

        request = self._pb2.ScoreRequest(
            signal_id=trade.signal_id,
            symbol=trade.symbol,
            timeframe=trade.timeframe,
            side=trade.setup.side,
            features={k: (v if math.isfinite(v) else math.nan) for k, v in trade.features.items()},
        )
        try:
            response = await self._stub.Score(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            self._counters.score_failures += 1
            failures = self._counters.score_failures
            if failures <= 3 or failures % 100 == 0:
                logger.warning(
                    "Score failed on %s (%d so far): %s %s",
                    self._target,
                    failures,
                    exc.code().name,
                    exc.details(),
                )
            return
        self._counters.scored += 1
        if response.fallback:
            self._counters.fallbacks += 1

    async def close(self) -> None:
        await self._channel.close()


def _trade_meta(trade: Trade, *, closed: bool) -> JsonCreated:
    o = trade.outcome
    state = "closed" if closed else "open"
    payload: dict[str, Any] = {
        "trade_id": trade.trade_id,
        "symbol": trade.symbol,
        "timeframe": trade.timeframe,
        "side": trade.setup.side,
        "entry": trade.setup.entry,
        "sl": trade.setup.sl,
        "tp": trade.setup.tp,
        "opened_at": format_utc(trade.ts),
        "closed_at": format_utc(trade.closed_at) if closed else None,
        "result": o.result if closed else None,
        "pnl": o.pnl if closed else None,
        "realised_r": o.realised_r if closed else None,
        "signal_id": trade.signal_id,
        "setup": trade.setup.setup,
        "exit_price": o.exit_price if closed else None,
        "exit_reason": o.reason if closed else None,
    }
    return JsonCreated.create(
        source=SOURCE,
        doc_type="trade_meta",
        payload=payload,
        run_id=trade.run_id,
        trade_id=trade.trade_id,
        setup_id=trade.setup.setup,
        rule_version=trade.rule_version,
        doc_id=f"trade_meta:{trade.trade_id}:{state}",
        key_fields=["symbol", "side", "setup", "result"],
        # Event time: the signal's bar (open) or the exit bar (closed), not publish time.
        ts=trade.closed_at if closed else trade.ts,
    )


class _Replay:
    def __init__(
        self,
        settings: ReplaySettings,
        counters: ReplayCounters,
        should_stop: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.counters = counters
        self.should_stop = should_stop
        self.run_id = settings.effective_run_id
        self.image_dir = settings.effective_image_dir / self.run_id
        self.state_path = state_file(settings.data_dir.absolute(), self.run_id)
        self.bars: dict[str, Bars] = {}
        self.actions: dict[tuple[int, int], list[_Action]] = defaultdict(list)
        self.action_bar: dict[str, tuple[str, int]] = {}
        self.end_bar: dict[str, int] = {}
        self.clamp: dict[str, int] = {}
        self.kept_keys: set[str] = set()
        self.state = ReplayState(run_id=self.run_id)

    def plan(self) -> None:
        """Load the data, plan every trade, apply ``--limit-signals``, index the actions."""
        trades: list[tuple[int, Trade]] = []
        for index, name in enumerate(self.settings.data):
            bars = load_bars(name, seed=self.settings.seed)
            self.bars[name] = bars
            trades += [(index, trade) for trade in plan_trades(bars, run_id=self.run_id)]
        trades.sort(key=lambda item: (item[1].bar, item[0]))
        limit = self.settings.limit_signals
        kept = trades if limit is None else trades[:limit]
        for index, name in enumerate(self.settings.data):
            mine = [t for i, t in kept if i == index]
            if limit is None:
                self.end_bar[name] = len(self.bars[name]) - 1
            else:
                self.end_bar[name] = max((t.outcome.exit_bar for t in mine), default=-1)
                excluded = [t.bar for i, t in trades[limit:] if i == index]
                if excluded:  # a later, larger limit must still find these signals
                    self.clamp[name] = min(excluded) - 1
        for _, trade in trades:  # every planned trade, so saved keys of any run are known
            self.action_bar[f"open:{trade.signal_id}"] = (trade.data, trade.bar)
            self.action_bar[f"score:{trade.signal_id}"] = (trade.data, trade.bar)
            self.action_bar[f"close:{trade.signal_id}"] = (trade.data, trade.outcome.exit_bar)
        for index, trade in kept:
            opening, closing = _Action("open", trade), _Action("close", trade)
            self.actions[(trade.bar, index)].append(opening)
            self.actions[(trade.outcome.exit_bar, index)].append(closing)
            self.kept_keys.update({opening.key, closing.key, f"score:{trade.signal_id}"})
        for group in self.actions.values():  # closes first, then opens, in signal order
            group.sort(key=lambda a: (a.kind != "close", a.trade.bar))
        self.counters.run_id = self.run_id
        self.counters.planned_signals = len(kept)
        self.counters.bars_total = sum(b + 1 for b in self.end_bar.values())

    def _save(self, *, finished: bool = False) -> None:
        cursor = self.state.cursor
        # Only what lies past a cursor needs remembering.
        self.state.done = {
            key
            for key in self.state.done
            if key in self.action_bar
            and self.action_bar[key][1] > cursor.get(self.action_bar[key][0], -1)
        }
        self.state.finished = finished
        save_state(self.state_path, self.state)

    async def run(self, publisher: _Publisher | None, scorer: _Scorer | None) -> None:
        self.state = load_state(self.state_path, self.run_id)
        names = list(self.settings.data)
        cursor = self.state.cursor
        for name in names:
            cursor.setdefault(name, -1)
        self.counters.bars = sum(min(cursor[n], self.end_bar[n]) + 1 for n in names)
        start = min(cursor[n] + 1 for n in names)
        last = max(self.end_bar.values())
        action_steps = sorted({k for k, _ in self.actions})
        pace = None if self.settings.fast else 1.0 / self.settings.bars_per_second
        steps = (
            [k for k in action_steps if k >= start] + [last]
            if pace is None
            else list(range(start, last + 1))
        )
        next_tick = time.monotonic()
        last_checkpoint = time.monotonic()
        processed = start - 1
        for k in steps:
            if k <= processed:
                continue
            if self.should_stop():
                break
            for index, name in enumerate(names):
                if k > self.end_bar[name] or k <= cursor[name]:
                    continue
                for action in self.actions.get((k, index), []):
                    await self._do(action, publisher, scorer)
            processed = k
            self.counters.bars = sum(min(k, self.end_bar[n]) + 1 for n in names)
            now = time.monotonic()
            if now - last_checkpoint >= _CHECKPOINT_S or k == last:
                await self._checkpoint(publisher, k)
                last_checkpoint = now
            if pace is not None:
                next_tick += pace
                delay = next_tick - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_tick = time.monotonic()  # running late: do not burst to catch up
        await self._checkpoint(publisher, processed, final=processed >= last)

    async def _checkpoint(
        self, publisher: _Publisher | None, k: int, *, final: bool = False
    ) -> None:
        if publisher is not None:
            await publisher.flush()
        complete = final
        for name in self.settings.data:
            reached = min(k, self.end_bar[name])
            clamp = self.clamp.get(name)
            if clamp is not None and reached > clamp:
                complete = False  # a later, larger limit still has signals to play
                # A limited run stops short of a signal it left out: the cursor stays
                # before it (a later, larger limit plays it), what was done past it is
                # remembered instead.
                for key, (data, bar) in self.action_bar.items():
                    if data == name and clamp < bar <= reached and self._played(key):
                        self.state.done.add(key)
                reached = clamp
            self.state.cursor[name] = max(self.state.cursor.get(name, -1), reached)
        self.counters.finished = final
        self._save(finished=complete)

    def _played(self, key: str) -> bool:
        return key in self.kept_keys

    async def _do(
        self, action: _Action, publisher: _Publisher | None, scorer: _Scorer | None
    ) -> None:
        trade = action.trade
        if self.state.is_done(trade.data, self.action_bar[action.key][1], action.key):
            self.counters.skipped += 1
            return
        if action.kind == "open":
            await self._open(trade, publisher, scorer)
            self.counters.signals += 1
        else:
            await self._close(trade, publisher)
            self.counters.outcomes += 1

    async def _open(
        self, trade: Trade, publisher: _Publisher | None, scorer: _Scorer | None
    ) -> None:
        events: list[Event] = [
            SignalFeatures.create(
                source=SOURCE,
                signal_id=trade.signal_id,
                symbol=trade.symbol,
                timeframe=trade.timeframe,
                side=trade.setup.side,
                ts=trade.ts,
                features=trade.features,
                feature_schema_version=FEATURE_SCHEMA_VERSION,
                entry_price=trade.setup.entry,
                run_id=trade.run_id,
                trade_id=trade.trade_id,
                setup_id=trade.setup.setup,
                rule_version=trade.rule_version,
            )
        ]
        if publisher is not None:
            await publisher.publish(events[0])
        score_key = f"score:{trade.signal_id}"
        if scorer is not None and score_key not in self.state.done:
            await scorer.score(trade)
            # The gateway logs a prediction per call: never call twice for one signal.
            self.state.done.add(score_key)
            save_state(self.state_path, self.state)
        bars = self.bars[trade.data]
        s = trade.setup
        for image_type in ("original", "annotated"):
            annotated = image_type == "annotated"
            png = render_chart(
                bars,
                trade.bar,
                annotate=annotated,
                side=s.side,
                entry=s.entry,
                sl=s.sl,
                tp=s.tp,
                title=f"{s.setup} {s.side}" if annotated else "",
            )
            path = self.image_dir / trade.symbol / f"{trade.trade_id}_{image_type}.png"
            await asyncio.to_thread(write_png, path, png)
            events.append(
                PngCreated.create(
                    source=SOURCE,
                    file_path=str(path),
                    run_id=trade.run_id,
                    trade_id=trade.trade_id,
                    setup_id=s.setup,
                    rule_version=trade.rule_version,
                    symbol=trade.symbol,
                    timeframe=trade.timeframe,
                    image_type=image_type,
                    author=CHART_AUTHOR,
                    ts=trade.ts,
                )
            )
        events.append(_trade_meta(trade, closed=False))
        events.append(
            JsonCreated.create(
                source=SOURCE,
                doc_type="llm_suggestion",
                payload=suggest(
                    trade_id=trade.trade_id, side=s.side, setup=s.setup, features=trade.features
                ),
                run_id=trade.run_id,
                trade_id=trade.trade_id,
                setup_id=s.setup,
                rule_version=trade.rule_version,
                doc_id=f"llm_suggestion:{trade.trade_id}",
                key_fields=["label", "quality_grade", "comment"],
                ts=trade.ts,
            )
        )
        if publisher is not None:
            for event in events[1:]:
                await publisher.publish(event)

    async def _close(self, trade: Trade, publisher: _Publisher | None) -> None:
        o = trade.outcome
        outcome = SignalOutcome.create(
            source=SOURCE,
            signal_id=trade.signal_id,
            closed_at=trade.closed_at,
            result=o.result,
            entry_price=trade.setup.entry,
            exit_price=o.exit_price,
            pnl=o.pnl,
            realised_r=o.realised_r,
            mfe=o.mfe,
            mae=o.mae,
        )
        if publisher is not None:
            await publisher.publish(outcome)
            await publisher.publish(_trade_meta(trade, closed=True))


async def _ensure_streams(settings: ReplaySettings) -> None:
    from hindsight.common.broker import create_broker, ensure_streams

    broker = create_broker(settings, client_name="replay")
    await broker.connect()
    try:
        await ensure_streams(broker, settings)
    finally:
        await broker.stop()


async def replay(
    settings: ReplaySettings,
    *,
    should_stop: Callable[[], bool] | None = None,
    counters: ReplayCounters | None = None,
    on_status: Callable[[ReplayCounters], None] | None = None,
) -> ReplayCounters:
    """Run the replay until it is done or ``should_stop()``; returns the counters.

    ``on_status`` is called every ``status_interval_s`` and once at the end.
    """
    import nats

    counters = counters or ReplayCounters()
    stop = should_stop or (lambda: False)
    run = _Replay(settings, counters, stop)
    await asyncio.to_thread(run.plan)
    if not settings.nats_servers:
        raise ValueError("HINDSIGHT_NATS_URL is not set")
    await _ensure_streams(settings)
    client = await nats.connect(
        settings.nats_servers, connect_timeout=5, max_reconnect_attempts=-1, name="replay"
    )
    scorer = (
        _Scorer(settings.gateway_target, settings.score_timeout_s, counters)
        if settings.score
        else None
    )
    reporter: asyncio.Task[None] | None = None
    if on_status is not None:
        reporter = asyncio.create_task(_report(on_status, counters, settings.status_interval_s))
    try:
        js = client.jetstream(timeout=10.0, publish_async_max_pending=settings.max_in_flight)
        await run.run(_Publisher(js, counters), scorer)
    finally:
        if reporter is not None:
            reporter.cancel()
        if scorer is not None:
            await scorer.close()
        await client.close()
        if on_status is not None:
            on_status(counters)
    return counters


async def _report(
    on_status: Callable[[ReplayCounters], None], counters: ReplayCounters, every: float
) -> None:
    while True:
        await asyncio.sleep(every)
        on_status(counters)


def run_replay(
    settings: ReplaySettings,
    stop_event: threading.Event | None = None,
    *,
    on_status: Callable[[ReplayCounters], None] | None = None,
    counters: ReplayCounters | None = None,
) -> ReplayCounters:
    """Blocking replay (its own event loop); ``stop_event.set()`` stops it at the next bar."""
    event = stop_event or threading.Event()
    return asyncio.run(
        replay(settings, should_stop=event.is_set, counters=counters, on_status=on_status)
    )
