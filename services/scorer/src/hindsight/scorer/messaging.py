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
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError as JsNotFoundError

from hindsight.common.background import BackgroundPublisher, is_connected
from hindsight.common.broker import STREAM, ensure_streams
from hindsight.common.errors import HindsightError
from hindsight.common.events import MODEL_DEPLOYED, ModelDeployed, PredictionLogged, parse_event
from hindsight.common.settings import BaseServiceSettings
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.metrics import PREDICTIONS_LOGGED, PREDICTIONS_UNLOGGED

__all__ = ["DeploymentFeed", "PredictionLog", "is_connected", "to_deployment"]

logger = logging.getLogger(__name__)

SOURCE = "scorer"


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


class PredictionLog(BackgroundPublisher[_Prediction]):
    """Publishes ``prediction.logged`` for the scorer's own answers, off the request path.

    Calls marked by the gateway are not recorded (the gateway logs those).
    """

    def __init__(self, broker: NatsBroker, *, capacity: int, batch_size: int) -> None:
        super().__init__(
            broker,
            _to_event,
            capacity=capacity,
            batch_size=batch_size,
            published=PREDICTIONS_LOGGED,
            unpublished=PREDICTIONS_UNLOGGED,
            name="scorer-prediction-log",
        )

    def record(
        self, signal_id: str, model_version: str, p_success: float, latency_ms: float
    ) -> None:
        """Queue one prediction for logging; O(1), never awaits."""
        self.put(_Prediction(signal_id, model_version, p_success, latency_ms))


def _to_event(p: _Prediction) -> PredictionLogged:
    return PredictionLogged.create(
        source=SOURCE,
        prediction_id=str(uuid.uuid4()),
        signal_id=p.signal_id,
        model_version=p.model_version,
        p_success=p.p_success,
        fallback=False,
        latency_ms=p.latency_ms,
    )
