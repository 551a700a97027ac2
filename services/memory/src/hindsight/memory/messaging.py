"""Thin NATS side: durable pull consumers of embedding.created and label.saved."""

from __future__ import annotations

from faststream.nats import NatsBroker

from hindsight.common.broker import ConsumerOptions, subscribe_event, subscribe_event_batch
from hindsight.common.events import EmbeddingCreated, LabelSaved
from hindsight.memory.ingest import Ingestor

__all__ = ["EMBEDDINGS_DURABLE", "LABELS_DURABLE", "register_consumers"]

EMBEDDINGS_DURABLE = "memory_embeddings"
LABELS_DURABLE = "memory_labels"


def register_consumers(
    broker: NatsBroker, ingestor: Ingestor, *, max_deliveries: int, batch_size: int
) -> None:
    """Subscribe memory's handlers (before the broker starts).

    ``embedding.created`` is fetched ``batch_size`` at a time and written with one Chroma
    upsert per collection and one link-table upsert per fetch, acked after both.
    """

    async def on_embeddings(events: list[EmbeddingCreated]) -> None:
        await ingestor.on_embeddings(events)

    subscribe_event_batch(
        broker,
        EmbeddingCreated,
        on_embeddings,
        durable=EMBEDDINGS_DURABLE,
        options=ConsumerOptions(
            max_deliveries=max_deliveries, batch_size=batch_size, max_ack_pending=4096
        ),
    )
    subscribe_event(
        broker,
        LabelSaved,
        ingestor.on_label,
        durable=LABELS_DURABLE,
        options=ConsumerOptions(max_deliveries=max_deliveries),
    )
