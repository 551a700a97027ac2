"""NATS: background connection, ``model.deployed`` replay + live, ``prediction.logged``.

Consumer choice: every scorer replica must see every deployment, so a shared durable
(where replicas split the messages) is wrong. Each replica opens an **ordered ephemeral
consumer** with deliver policy ALL: JetStream replays the subject from the start, the
client library re-creates the consumer after a gap or reconnect from the last sequence
it saw, and the server deletes it when the replica goes away, so nothing leaks (a
per-replica durable would need a stable replica name and clean-up). No acks are
needed: applying a deployment is idempotent and the whole history is folded at start.

The connection is made in the background and retried forever: the scorer starts and
scores with NATS down.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError as JsNotFoundError

from hindsight.common.broker import STREAM, ensure_streams, publish_event
from hindsight.common.errors import HindsightError
from hindsight.common.events import MODEL_DEPLOYED, ModelDeployed, PredictionLogged, parse_event
from hindsight.common.settings import BaseServiceSettings
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.metrics import PREDICTIONS_LOGGED, PREDICTIONS_UNLOGGED

__all__ = ["DeploymentFeed", "PredictionLog", "is_connected", "to_deployment"]

logger = logging.getLogger(__name__)

SOURCE = "scorer"


def is_connected(broker: NatsBroker) -> bool:
    """True while the broker has a live connection."""
    try:
        return bool(broker.connection.is_connected)
    except Exception:  # faststream raises before the first connect
        return False


def to_deployment(event: ModelDeployed) -> Deployment:
    """The domain view of a ``model.deployed`` event."""
    return Deployment(
        model_name=event.model_name,
        version=event.version,
        stage=event.stage,
        artifact_uri=event.artifact_uri,
        sha256=event.sha256.lower(),
    )


class DeploymentFeed:
    """Connects in the background, replays ``model.deployed``, then follows it live."""

    def __init__(
        self,
        broker: NatsBroker,
        settings: BaseServiceSettings,
        *,
        on_replayed: Callable[[list[Deployment]], Awaitable[None]],
        on_deployed: Callable[[Deployment], Awaitable[None]],
    ) -> None:
        self.broker = broker
        self.settings = settings
        self._on_replayed = on_replayed
        self._on_deployed = on_deployed
        self.replayed = asyncio.Event()
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._history = False

    async def start(self) -> None:
        """Start connecting and consuming in the background; returns at once."""
        self._tasks = [asyncio.create_task(self._run(), name="scorer-nats")]

    async def stop(self) -> None:
        """Stop consuming and close the connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task
        with suppress(Exception):
            await self.broker.stop()

    async def _run(self) -> None:
        # nats-py retries the first connect forever (max_reconnect_attempts=-1).
        await self.broker.connect()
        logger.info("connected to NATS")
        delay = 0.5
        while True:
            try:
                await ensure_streams(self.broker, self.settings)
                await self._subscribe()
                break
            except Exception as exc:
                logger.warning("JetStream not usable yet (%s), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await self._consume()

    async def _subscribe(self) -> None:
        js = self.broker.connection.jetstream()
        try:
            await js.get_last_msg(STREAM, MODEL_DEPLOYED)
            self._history = True
        except JsNotFoundError:
            self._history = False

        async def enqueue(msg: Msg) -> None:
            self._queue.put_nowait(msg)

        await js.subscribe(
            MODEL_DEPLOYED,
            stream=STREAM,
            cb=enqueue,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )

    async def _consume(self) -> None:
        replay: list[Deployment] = []
        if not self._history:
            await self._finish_replay(replay)
        while True:
            msg = await self._queue.get()
            deployment = self._parse(msg)
            if self.replayed.is_set():
                if deployment is not None:
                    await self._apply(deployment)
                continue
            if deployment is not None:
                replay.append(deployment)
            if msg.metadata.num_pending == 0:
                await self._finish_replay(replay)

    async def _finish_replay(self, replay: list[Deployment]) -> None:
        logger.info("model.deployed replayed: %d events", len(replay))
        try:
            await self._on_replayed(replay)
        finally:
            self.replayed.set()

    async def _apply(self, deployment: Deployment) -> None:
        try:
            await self._on_deployed(deployment)
        except Exception:
            logger.exception("applying model.deployed failed")

    @staticmethod
    def _parse(msg: Msg) -> Deployment | None:
        try:
            event = parse_event(MODEL_DEPLOYED, msg.data)
        except HindsightError as exc:
            logger.warning("ignoring an invalid model.deployed: %s", exc)
            return None
        assert isinstance(event, ModelDeployed)
        return to_deployment(event)


@dataclass(frozen=True, slots=True)
class _Prediction:
    signal_id: str
    model_version: str
    p_success: float
    latency_ms: float


class PredictionLog:
    """Publishes ``prediction.logged`` in batches, off the request path.

    :meth:`record` is O(1) and never awaits; a bounded deque drops the oldest entry when
    full (counted). A background task publishes batches while NATS is connected.
    """

    def __init__(self, broker: NatsBroker, *, capacity: int, batch_size: int) -> None:
        self.broker = broker
        self.batch_size = batch_size
        self._pending: deque[_Prediction] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def record(
        self, signal_id: str, model_version: str, p_success: float, latency_ms: float
    ) -> None:
        """Queue one prediction for logging."""
        pending = self._pending
        if len(pending) == pending.maxlen:
            PREDICTIONS_UNLOGGED.labels("queue_full").inc()
        pending.append(_Prediction(signal_id, model_version, p_success, latency_ms))
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Predictions waiting to be published."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the publishing task."""
        self._task = asyncio.create_task(self._drain(), name="scorer-prediction-log")

    async def stop(self, *, flush_timeout: float = 2.0) -> None:
        """Publish what is queued (bounded by ``flush_timeout``), then stop."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._pending and is_connected(self.broker):
            with suppress(TimeoutError):
                await asyncio.wait_for(self._flush_all(), flush_timeout)
        if self._pending:
            PREDICTIONS_UNLOGGED.labels("shutdown").inc(len(self._pending))
            self._pending.clear()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if not is_connected(self.broker):
                    await asyncio.sleep(0.25)
                    continue
                await self._publish_batch()

    async def _flush_all(self) -> None:
        while self._pending:
            await self._publish_batch()

    async def _publish_batch(self) -> None:
        batch = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
        events = [
            PredictionLogged.create(
                source=SOURCE,
                prediction_id=str(uuid.uuid4()),
                signal_id=p.signal_id,
                model_version=p.model_version,
                p_success=p.p_success,
                fallback=False,
                latency_ms=p.latency_ms,
            )
            for p in batch
        ]
        results = await asyncio.gather(
            *(publish_event(self.broker, event) for event in events), return_exceptions=True
        )
        failed = sum(1 for r in results if isinstance(r, BaseException))
        if failed:
            PREDICTIONS_UNLOGGED.labels("publish_failed").inc(failed)
            logger.warning("could not log %d predictions", failed)
        PREDICTIONS_LOGGED.inc(len(results) - failed)
