"""NATS: background connection, routing events (replay + live), ``prediction.logged``.

Routing events: every gateway replica needs every ``model.deployed`` and ``ab.completed``,
so each replica opens one **ordered ephemeral consumer** per subject with deliver policy
ALL (as the scorer does): JetStream replays the history, the client recreates the consumer
after a gap or reconnect from the last sequence seen, the server removes it when the
replica goes away. The replay of both subjects is folded in stream-sequence order into a
fresh table that then replaces the live one; later events are applied as they come.
Folding is idempotent, so no acks are needed.

The connection is made in the background and retried forever: the gateway starts and
answers with NATS down (routing = production only until the replay arrives).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import NamedTuple, Protocol

from faststream.nats import NatsBroker
from nats.aio.msg import Msg

from hindsight.common.background import BackgroundPublisher, is_connected
from hindsight.common.errors import HindsightError
from hindsight.common.events import (
    AB_COMPLETED,
    MODEL_DEPLOYED,
    AbCompleted,
    ModelDeployed,
    PredictionLogged,
    parse_event,
)
from hindsight.common.settings import BaseServiceSettings
from hindsight.common.stream_replay import ReplayFeed
from hindsight.gateway.domain.routing import Completed, Deployed, RoutingTable
from hindsight.gateway.metrics import PREDICTIONS_LOGGED, PREDICTIONS_UNLOGGED, ROUTING_EVENTS

__all__ = [
    "PredictionLog",
    "Record",
    "Recorder",
    "RoutingFeed",
    "is_connected",
    "to_routing_event",
]

logger = logging.getLogger(__name__)

SOURCE = "gateway"
SUBJECTS = (MODEL_DEPLOYED, AB_COMPLETED)


def to_routing_event(subject: str, data: bytes) -> Deployed | Completed | None:
    """The routing view of a message; None (logged) when it is not a valid event."""
    try:
        event = parse_event(subject, data)
    except HindsightError as exc:
        logger.warning("ignoring an invalid %s: %s", subject, exc)
        return None
    if isinstance(event, ModelDeployed):
        return Deployed(
            model_name=event.model_name,
            version=event.version,
            stage=event.stage,
            experiment_id=event.experiment_id,
            traffic=dict(event.traffic) if event.traffic else None,
        )
    if isinstance(event, AbCompleted):
        return Completed(event.experiment_id, event.model_name, event.decision)
    return None


class RoutingFeed(ReplayFeed):
    """Replays the routing events into a fresh table, then applies each live one."""

    def __init__(
        self,
        broker: NatsBroker,
        settings: BaseServiceSettings,
        *,
        get_table: Callable[[], RoutingTable],
        set_table: Callable[[RoutingTable], None],
    ) -> None:
        async def replayed(history: list[Msg]) -> None:
            table = RoutingTable()
            for m in history:
                await self.slice.checkpoint()  # a long history must not starve Score calls
                event = to_routing_event(m.subject, m.data)
                if event is not None:
                    table.apply(event)
            for subject in SUBJECTS:
                ROUTING_EVENTS.labels(subject).inc(0)
            set_table(table)
            logger.info(
                "routing events replayed: %d",
                len(history),
                extra={"routes": [asdict(routes) for routes in table.snapshot()]},
            )

        async def live(msg: Msg) -> None:
            event = to_routing_event(msg.subject, msg.data)
            if event is not None:
                get_table().apply(event)
                ROUTING_EVENTS.labels(msg.subject).inc()
                logger.info("routing event applied", extra={"routing_event": repr(event)})

        super().__init__(
            broker, settings, SUBJECTS, on_replayed=replayed, on_message=live, name="gateway-nats"
        )


class Record(NamedTuple):
    """One answer (or shadow score) waiting to be logged."""

    signal_id: str
    model_version: str | None
    p_success: float
    fallback: bool
    fallback_reason: str | None
    experiment_id: str | None
    arm: str | None
    latency_ms: float
    model_name: str | None = None
    """The family of a ``Predict`` answer; None for ``Score`` (the default model)."""


class Recorder(Protocol):
    """Where answers go to be logged (the prediction log; a list in tests)."""

    def record(self, record: Record) -> None:
        """Queue one record; O(1), never awaits."""


class PredictionLog(BackgroundPublisher[Record]):
    """Publishes ``prediction.logged`` for every answer and shadow score, off the request path."""

    def __init__(
        self, broker: NatsBroker, *, capacity: int, max_in_flight: int, linger_s: float = 0.0
    ) -> None:
        super().__init__(
            broker,
            _event,
            capacity=capacity,
            max_in_flight=max_in_flight,
            published=PREDICTIONS_LOGGED,
            unpublished=PREDICTIONS_UNLOGGED,
            name="gateway-prediction-log",
            linger_s=linger_s,
        )

    def record(self, record: Record) -> None:
        """Queue one record for logging; O(1), never awaits."""
        self.put(record)


def _event(r: Record) -> PredictionLogged:
    extra = {"fallback_reason": r.fallback_reason} if r.fallback_reason else {}
    return PredictionLogged.create(
        source=SOURCE,
        prediction_id=str(uuid.uuid4()),
        signal_id=r.signal_id,
        model_version=r.model_version,
        p_success=r.p_success,
        fallback=r.fallback,
        experiment_id=r.experiment_id,
        arm=r.arm,
        latency_ms=r.latency_ms,
        model_name=r.model_name,
        **extra,
    )
