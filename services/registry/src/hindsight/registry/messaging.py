"""NATS side: the ``training.completed`` consumer and the outbox relay of ``model.deployed``."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from faststream.nats import NatsBroker

from hindsight.common.broker import ConsumerOptions, publish_event, subscribe_event
from hindsight.common.events import MODEL_DEPLOYED, ModelDeployed, TrainingCompleted
from hindsight.registry.domain import Stage
from hindsight.registry.metrics import OUTBOX_PENDING, VERSIONS
from hindsight.registry.service import Registry
from hindsight.registry.storage import Storage

__all__ = ["DURABLE", "OutboxRelay", "subscribe"]

logger = logging.getLogger(__name__)

DURABLE = "registry_training"


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


def _event(row: dict[str, Any]) -> ModelDeployed:
    # deployment_id (the outbox row) keeps a rollback from being dropped as a duplicate.
    payload = dict(row["payload"])
    return ModelDeployed.model_validate(
        {
            **payload,
            "schema_version": ModelDeployed.SCHEMA_VERSION,
            "source": "registry",
            "deployment_id": f"registry-{row['id']}",
        }
    )


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
                if row["subject"] != MODEL_DEPLOYED:  # pragma: no cover - future subjects
                    logger.error("unknown outbox subject %s", row["subject"])
                    continue
                try:
                    await publish_event(self.broker, _event(row))
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
