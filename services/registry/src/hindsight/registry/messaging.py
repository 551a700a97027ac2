"""NATS side: the consumers (``training.completed``, ``prediction.logged``,
``signal.outcome``) and the outbox relay (``model.deployed``, ``ab.completed``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from faststream.nats import NatsBroker
from pydantic import ValidationError

from hindsight.common.broker import (
    ConsumerOptions,
    publish_event,
    subscribe_event,
    subscribe_event_batch,
)
from hindsight.common.events import (
    EVENT_TYPES,
    MODEL_DEPLOYED,
    Event,
    PredictionLogged,
    SignalOutcome,
    TrainingCompleted,
)
from hindsight.registry.domain import Stage
from hindsight.registry.experiments import Experiments
from hindsight.registry.metrics import OUTBOX_PENDING, VERSIONS, init_model_series
from hindsight.registry.service import Registry
from hindsight.registry.storage import Storage

__all__ = [
    "DURABLE",
    "OUTCOMES_DURABLE",
    "PREDICTIONS_DURABLE",
    "OutboxRelay",
    "subscribe",
    "subscribe_evaluation",
]

logger = logging.getLogger(__name__)

DURABLE = "registry_training"
PREDICTIONS_DURABLE = "registry_predictions"
OUTCOMES_DURABLE = "registry_outcomes"


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
    experiments: Experiments,
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
        stored = await experiments.handle_predictions(events)
        if stored.joined:  # their outcomes came first: evaluable only now
            on_outcome()

    async def on_signal_outcome(event: SignalOutcome) -> None:
        if await experiments.handle_outcome(event):
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


def _event(row: dict[str, Any]) -> Event:
    """The event of an outbox row (any subject of the catalogue)."""
    payload = {
        **row["payload"],
        "schema_version": EVENT_TYPES[row["subject"]].SCHEMA_VERSION,
        "source": "registry",
    }
    if row["subject"] == MODEL_DEPLOYED:
        # deployment_id (the outbox row) keeps a rollback from being dropped as a duplicate.
        payload["deployment_id"] = f"registry-{row['id']}"
    return EVENT_TYPES[row["subject"]].model_validate(payload)


class OutboxRelay:
    """Publishes committed outbox rows in order; retries until JetStream acknowledges."""

    def __init__(self, storage: Storage, broker: NatsBroker, *, poll_s: float = 1.0) -> None:
        self.storage = storage
        self.broker = broker
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Something was committed: look now instead of at the next poll."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish pending rows oldest first; stop at the first failure. Returns rows sent."""
        sent = 0
        async with self.storage.outbox_batch() as (conn, rows):
            for row in rows:
                try:
                    event = _event(row)
                except (KeyError, ValidationError) as exc:  # a bug: never publishable
                    error = f"unpublishable outbox row: {type(exc).__name__}: {exc}"
                    await self.storage.mark_failed(conn, row["id"], error[:2000])
                    logger.error(error)
                    continue
                try:
                    await publish_event(self.broker, event)
                except Exception as exc:  # NATS down, not connected yet, timeout: retry later
                    error = f"{type(exc).__name__}: {exc}"
                    await self.storage.mark_failed(conn, row["id"], error)
                    logger.warning("outbox publish failed, will retry: %s", error)
                    break
                await self.storage.mark_sent(conn, row["id"])
                sent += 1
        return sent

    async def refresh_gauges(self) -> None:
        """Versions by stage and pending outbox rows, from the database."""
        OUTBOX_PENDING.set(await self.storage.pending_outbox())
        counts = await self.storage.stage_counts()
        seen = {(c["model_name"], c["stage"]): int(c["n"]) for c in counts}
        for model in {c["model_name"] for c in counts}:
            init_model_series(model)  # its counters at 0 before their first event
            for stage in Stage:
                VERSIONS.labels(model, stage.value).set(seen.get((model, stage.value), 0))

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.relay_once()
                await self.refresh_gauges()
            except Exception:  # database or NATS down: keep trying, never die
                logger.exception("outbox relay pass failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def start(self) -> None:
        """Run the relay loop in the background."""
        self._task = asyncio.create_task(self._run(), name="registry-outbox-relay")

    async def stop(self) -> None:
        """Stop the loop (unsent rows stay in the outbox for the next start)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None
