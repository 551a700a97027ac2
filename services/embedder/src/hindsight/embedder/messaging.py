"""Thin NATS side: the two durable consumers, the embed.query responder, the publisher."""

from __future__ import annotations

import json

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from hindsight.common.broker import ConsumerOptions, publish_event, subscribe_event
from hindsight.common.events import EmbeddingCreated, JsonCreated, PngCreated
from hindsight.embedder.config import EmbedderSettings
from hindsight.embedder.pipeline import EmbeddingPipeline, Publisher

__all__ = ["durable_names", "make_publisher", "register_consumers"]


def durable_names(settings: EmbedderSettings) -> dict[str, str]:
    """Subject → durable consumer name (replicas share these, so each event is done once)."""
    prefix = settings.durable_prefix
    return {PngCreated.subject: f"{prefix}_png", JsonCreated.subject: f"{prefix}_json"}


def register_consumers(
    broker: NatsBroker, pipeline: EmbeddingPipeline, settings: EmbedderSettings
) -> None:
    """Subscribe the embedder's handlers (before the broker starts)."""
    # Two batches in flight: one in the forward pass, the next one filling up. The ack wait
    # is short: a message waiting for its batch is kept by in-progress heartbeats.
    options = ConsumerOptions(
        max_deliveries=settings.max_deliveries,
        batch_size=settings.batch_size,
        max_workers=2 * settings.batch_size,
        ack_wait_s=settings.ack_wait_s,
        max_ack_pending=max(1000, 4 * settings.batch_size),
    )
    names = durable_names(settings)
    subscribe_event(
        broker, PngCreated, pipeline.on_png, durable=names[PngCreated.subject], options=options
    )
    subscribe_event(
        broker, JsonCreated, pipeline.on_json, durable=names[JsonCreated.subject], options=options
    )

    async def answer(msg: NatsMessage) -> None:
        reply = await pipeline.query(msg.body)
        if msg.reply_to:
            await broker.publish(
                json.dumps(reply).encode(),
                subject=msg.reply_to,
                headers={"content-type": "application/json"},
            )

    # A queue group: replicas share the queries, each is answered once.
    broker.subscriber(
        settings.query_subject,
        queue=f"{settings.durable_prefix}_query",
        title=f"{settings.durable_prefix}:{settings.query_subject}",
        description="embed.query request-reply (CLIP or MiniLM query vectors)",
    )(answer)


def make_publisher(broker: NatsBroker) -> Publisher:
    """Publish ``embedding.created`` with its idempotency key."""

    async def publish(event: EmbeddingCreated) -> None:
        await publish_event(broker, event)

    return publish
