"""Thin NATS side: the bar.closed and signal.features consumers, the window responder and
the signal.labeled publisher."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from hindsight.common.broker import ConsumerOptions, publish_event, subscribe_event_batch
from hindsight.common.errors import InvalidInputError
from hindsight.common.events import BarClosed, Event, SignalFeatures
from hindsight.market.metrics import WINDOW_REQUESTS
from hindsight.market.schemas import BarWindow, parse_query

__all__ = ["DURABLES", "make_publisher", "register_consumers", "register_window_responder"]

logger = logging.getLogger(__name__)

DURABLES: dict[str, str] = {
    BarClosed.subject: "market_bars",
    SignalFeatures.subject: "market_signals",
}

BarsHandler = Callable[[list[BarClosed]], Awaitable[None]]
SignalsHandler = Callable[[list[SignalFeatures]], Awaitable[None]]


def register_consumers(
    broker: NatsBroker,
    *,
    on_bars: BarsHandler,
    on_signals: SignalsHandler,
    max_deliveries: int,
    bar_batch_size: int,
    signal_batch_size: int,
) -> None:
    """Subscribe the bar ingest and the Back-Labeler (before the broker starts)."""
    subscribe_event_batch(
        broker,
        BarClosed,
        on_bars,
        durable=DURABLES[BarClosed.subject],
        options=ConsumerOptions(
            max_deliveries=max_deliveries,
            batch_size=bar_batch_size,
            max_ack_pending=max(1000, 4 * bar_batch_size),
        ),
    )
    subscribe_event_batch(
        broker,
        SignalFeatures,
        on_signals,
        durable=DURABLES[SignalFeatures.subject],
        options=ConsumerOptions(
            max_deliveries=max_deliveries,
            batch_size=signal_batch_size,
            max_ack_pending=max(1000, 4 * signal_batch_size),
        ),
    )


def register_window_responder(
    broker: NatsBroker,
    window: Callable[..., Awaitable[BarWindow]],
    *,
    subject: str,
    max_n: int,
    queue: str = "market_windows",
) -> None:
    """Answer ``market.bars.window`` requests (a queue group: replicas share them)."""

    async def answer(msg: NatsMessage) -> None:
        reply: dict[str, Any] | str
        try:
            raw = json.loads(msg.body)
            if not isinstance(raw, dict):
                raise InvalidInputError("the request must be a JSON object", field="body")
            result = await window(parse_query(raw, max_n=max_n))
        except json.JSONDecodeError as exc:
            reply = {"error": {"field": "body", "message": f"not valid JSON: {exc}"}}
            WINDOW_REQUESTS.labels("nats", "invalid").inc()
        except InvalidInputError as exc:
            # An error object is schemaless by design: {"field": ..., "message": ...}.
            reply = {"error": {"field": exc.field, "message": exc.reason}}
            WINDOW_REQUESTS.labels("nats", "invalid").inc()
        except Exception as exc:  # the database away: say so instead of timing out
            logger.warning("window request failed: %s", exc)
            reply = {"error": {"field": None, "message": f"unavailable: {exc}"}}
            WINDOW_REQUESTS.labels("nats", "error").inc()
        else:
            reply = result.model_dump_json()
            WINDOW_REQUESTS.labels("nats", "ok").inc()
        if msg.reply_to:
            body = reply if isinstance(reply, str) else json.dumps(reply)
            await broker.publish(
                body.encode(),
                subject=msg.reply_to,
                headers={"content-type": "application/json"},
            )

    broker.subscriber(
        subject,
        queue=queue,
        title=f"market:{subject}",
        description="market.bars.window request-reply (point-in-time bar windows)",
    )(answer)


def make_publisher(
    broker: NatsBroker, *, timeout: float = 3.0
) -> Callable[[Event], Awaitable[None]]:
    """Publish an event with its ``Nats-Msg-Id`` (the shared path); raise unless acked."""

    async def publish(event: Event) -> None:
        await publish_event(broker, event, timeout=timeout)

    return publish
