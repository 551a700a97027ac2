"""Thin NATS side: the two durable consumers and the label.saved publisher."""

from __future__ import annotations

from faststream.nats import NatsBroker

from hindsight.common.broker import ConsumerOptions, publish_event, subscribe_event
from hindsight.common.events import Event, JsonCreated, PngCreated
from hindsight.labeling.ingest import QueueBuilder
from hindsight.labeling.service import Publish

__all__ = ["DURABLES", "make_publisher", "register_consumers"]

DURABLES: dict[str, str] = {"png.created": "labeling_pngs", "json.created": "labeling_docs"}


def register_consumers(broker: NatsBroker, queue: QueueBuilder, *, max_deliveries: int) -> None:
    """Subscribe the queue builder (before the broker starts)."""
    options = ConsumerOptions(max_deliveries=max_deliveries, batch_size=64)
    subscribe_event(
        broker, PngCreated, queue.on_png, durable=DURABLES[PngCreated.subject], options=options
    )
    subscribe_event(
        broker, JsonCreated, queue.on_json, durable=DURABLES[JsonCreated.subject], options=options
    )


def make_publisher(broker: NatsBroker, *, timeout: float = 3.0) -> Publish:
    """Publish an event with its ``Nats-Msg-Id`` (the shared path); raise unless acked."""

    async def publish(event: Event) -> None:
        await publish_event(broker, event, timeout=timeout)

    return publish
