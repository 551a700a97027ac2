"""Thin NATS side: the four durable consumers and the training.completed publisher."""

from __future__ import annotations

from faststream.nats import NatsBroker

from hindsight.common.broker import (
    ConsumerOptions,
    publish_event,
    subscribe_event,
    subscribe_event_batch,
)
from hindsight.common.events import (
    Event,
    LabelSaved,
    SignalFeatures,
    SignalLabeled,
    SignalOutcome,
    TrainingRequested,
)
from hindsight.trainer.ingest import Ingestor
from hindsight.trainer.labels_ingest import LabelsIngestor
from hindsight.trainer.runs import Publisher, RunService

__all__ = ["DURABLES", "make_publisher", "register_consumers"]

DURABLES = {
    SignalFeatures: "trainer_signals",
    SignalOutcome: "trainer_outcomes",
    LabelSaved: "trainer_labels",
    TrainingRequested: "trainer_requests",
    SignalLabeled: "trainer_signal_labels",
}


def register_consumers(
    broker: NatsBroker,
    ingestor: Ingestor,
    runs: RunService,
    *,
    max_deliveries: int,
    batch_size: int = 1000,
    labels: LabelsIngestor | None = None,
) -> None:
    """Subscribe the trainer's handlers (before the broker starts).

    Signals and outcomes are fetched ``batch_size`` at a time and written with one upsert
    per fetch; the messages are acked after that commit (bad input is dead-lettered one by
    one by the batch consumer).
    """
    bulk = ConsumerOptions(
        max_deliveries=max_deliveries, batch_size=batch_size, max_ack_pending=4 * batch_size
    )

    async def on_signals(events: list[SignalFeatures]) -> None:
        await ingestor.on_signals(events)

    async def on_outcomes(events: list[SignalOutcome]) -> None:
        await ingestor.on_outcomes(events)

    subscribe_event_batch(
        broker, SignalFeatures, on_signals, durable=DURABLES[SignalFeatures], options=bulk
    )
    subscribe_event_batch(
        broker, SignalOutcome, on_outcomes, durable=DURABLES[SignalOutcome], options=bulk
    )
    if labels is not None:  # the Back-Labeler's labels, batched like signals (model families)
        subscribe_event_batch(
            broker, SignalLabeled, labels.on_labels, durable=DURABLES[SignalLabeled], options=bulk
        )
    subscribe_event(
        broker,
        LabelSaved,
        ingestor.on_label,
        durable=DURABLES[LabelSaved],
        options=ConsumerOptions(max_deliveries=max_deliveries),
    )

    async def on_request(event: TrainingRequested) -> None:
        # The request id is the run id, so a redelivered request finds its run row.
        if await runs.storage.get_run(event.request_id) is not None:
            return
        await runs.request(
            model_name=event.model_name,
            mode=event.mode,
            trigger="event",
            reason=event.reason,
            requested_by=event.requested_by,
            run_id=event.request_id,
        )

    subscribe_event(
        broker,
        TrainingRequested,
        on_request,
        durable=DURABLES[TrainingRequested],
        options=ConsumerOptions(max_deliveries=max_deliveries, batch_size=1),
    )


def make_publisher(broker: NatsBroker) -> Publisher:
    """Publish an event with its idempotency key."""

    async def publish(event: Event) -> None:
        await publish_event(broker, event)

    return publish
