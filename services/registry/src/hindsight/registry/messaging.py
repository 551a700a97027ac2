"""NATS side: the consumers (``training.completed``, ``prediction.logged``,
``signal.outcome``) and the publisher the outbox relay uses (``model.deployed``,
``ab.completed``)."""

from __future__ import annotations

from collections.abc import Callable

from faststream.nats import NatsBroker

from hindsight.common.broker import (
    ConsumerOptions,
    publish_event,
    subscribe_event,
    subscribe_event_batch,
)
from hindsight.common.events import Event, PredictionLogged, SignalOutcome, TrainingCompleted
from hindsight.common.outbox import Publish
from hindsight.registry.ingest import Ingest
from hindsight.registry.service import Registry

__all__ = [
    "DURABLE",
    "OUTCOMES_DURABLE",
    "PREDICTIONS_DURABLE",
    "publisher",
    "subscribe",
    "subscribe_evaluation",
]

DURABLE = "registry_training"
PREDICTIONS_DURABLE = "registry_predictions"
OUTCOMES_DURABLE = "registry_outcomes"


def publisher(broker: NatsBroker) -> Publish:
    """Publish an event with its ``Nats-Msg-Id``; raises unless JetStream acknowledged it."""

    async def publish(event: Event) -> None:
        await publish_event(broker, event)

    return publish


def subscribe(broker: NatsBroker, registry: Registry, *, max_deliveries: int) -> None:
    """Register the durable ``training.completed`` consumer."""

    async def on_training_completed(event: TrainingCompleted) -> None:
        await registry.handle_training_completed(event)

    subscribe_event(
        broker,
        TrainingCompleted,
        on_training_completed,
        durable=DURABLE,
        options=ConsumerOptions(max_deliveries=max_deliveries),
    )


def subscribe_evaluation(
    broker: NatsBroker,
    ingest: Ingest,
    *,
    max_deliveries: int,
    prediction_batch_size: int = 256,
    prediction_batch_pause_s: float = 0.1,
    on_outcome: Callable[[], None] = lambda: None,
) -> None:
    """Register the durable ``prediction.logged`` and ``signal.outcome`` consumers.

    Predictions come at the trading engine's rate (every Score answer), so they are
    fetched and written in batches, one INSERT per batch, with a pause after a full batch
    so that a catch-up never takes the CPU from the Score path. ``on_outcome`` is called
    when something became evaluable: an outcome with a result, or predictions whose
    outcome was stored first.
    """

    async def on_predictions(events: list[PredictionLogged]) -> None:
        stored = await ingest.handle_predictions(events)
        if stored.joined:  # their outcomes came first: evaluable only now
            on_outcome()

    async def on_signal_outcome(event: SignalOutcome) -> None:
        if await ingest.handle_outcome(event):
            on_outcome()

    subscribe_event_batch(
        broker,
        PredictionLogged,
        on_predictions,
        durable=PREDICTIONS_DURABLE,
        options=ConsumerOptions(
            max_deliveries=max_deliveries,
            batch_size=prediction_batch_size,
            max_ack_pending=max(1000, 4 * prediction_batch_size),
            batch_pause_s=prediction_batch_pause_s,
        ),
    )
    subscribe_event(
        broker,
        SignalOutcome,
        on_signal_outcome,
        durable=OUTCOMES_DURABLE,
        options=ConsumerOptions(max_deliveries=max_deliveries, batch_size=64),
    )
