"""Consumer-lag and DLQ-depth gauges (BrokerPart) against a real nats-server with JetStream."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from hindsight.common.broker import STREAM, ConsumerOptions, create_broker, subscribe_event
from hindsight.common.errors import InvalidInputError
from hindsight.common.events import SignalOutcome
from hindsight.common.runtime import BrokerPart
from hindsight.common.settings import BaseServiceSettings

pytestmark = pytest.mark.integration


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_pending_ack_pending_and_dlq_depth_follow_jetstream(
    nats_url: str, jetstream_reset: None, nats_client: NatsClient
) -> None:
    settings = BaseServiceSettings(nats_url=nats_url)
    broker = create_broker(settings, client_name="lag-test")
    release = asyncio.Event()
    durable = f"lag_test_{uuid.uuid4().hex[:6]}"

    async def slow(event: SignalOutcome) -> None:
        if event.signal_id == "bad":
            raise InvalidInputError("refused on purpose", field="signal_id")
        await release.wait()

    subscribe_event(
        broker,
        SignalOutcome,
        slow,
        durable=durable,
        options=ConsumerOptions(batch_size=1, max_ack_pending=1),
    )
    part = BrokerPart(broker, settings, lag_every_s=0.1)
    await part.start()
    try:
        assert (STREAM, durable) in part.durables()
        js = nats_client.jetstream()
        body = (
            '{{"schema_version":1,"occurred_at":"{t}","source":"t","signal_id":"{s}",'
            '"closed_at":"{t}"}}'
        )
        now = datetime.now(UTC).isoformat()
        await js.publish("signal.outcome", body.format(t=now, s="bad").encode(), stream=STREAM)
        for i in range(20):
            await js.publish(
                "signal.outcome", body.format(t=now, s=f"s{i}").encode(), stream=STREAM
            )

        async def lag() -> tuple[float | None, float | None]:
            await asyncio.sleep(0.2)
            return (
                gauge("hindsight_consumer_pending", stream=STREAM, consumer=durable),
                gauge("hindsight_consumer_ack_pending", stream=STREAM, consumer=durable),
            )

        for _ in range(100):  # the bad one is dead-lettered, s0 blocks the handler
            pending, ack_pending = await lag()
            if ack_pending == 1 and pending == 19:
                break
        assert (pending, ack_pending) == (19, 1)
        for _ in range(100):
            if gauge("hindsight_dlq_messages", subject="dlq.signal.outcome") == 1:
                break
            await asyncio.sleep(0.1)
        assert gauge("hindsight_dlq_messages", subject="dlq.signal.outcome") == 1

        release.set()
        for _ in range(100):
            pending, ack_pending = await lag()
            if (pending, ack_pending) == (0, 0):
                break
        assert (pending, ack_pending) == (0, 0)
    finally:
        await part.stop()
