"""Bars, signals, publishing and waits for market's integration tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient

from hindsight.common.broker import STREAM
from hindsight.common.events import Event, format_utc

T = TypeVar("T")
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)


def bar_body(
    i: int, *, symbol: str = "BTCUSD", timeframe: str = "1h", base: float = 100.0, **extra: Any
) -> dict[str, Any]:
    """A valid bar.closed body: bar ``i`` of a gently zig-zagging hourly series."""
    mid = base + (i % 7) - 3 + i * 0.05
    body: dict[str, Any] = {
        "schema_version": 1,
        "occurred_at": format_utc(datetime.now(UTC)),
        "source": "test-feed",
        "symbol": symbol,
        "timeframe": timeframe,
        "ts": format_utc(START + i * HOUR),
        "open": mid,
        "high": mid + 1.5,
        "low": mid - 1.5,
        "close": mid + 0.5,
        "volume": 1000.0 + i,
    }
    body.update(extra)
    return body


def signal_body(
    signal_id: str, ts: datetime, *, side: str = "buy", symbol: str = "BTCUSD"
) -> dict[str, Any]:
    """A signal.features body."""
    return {
        "schema_version": 1,
        "occurred_at": format_utc(datetime.now(UTC)),
        "source": "test",
        "signal_id": signal_id,
        "symbol": symbol,
        "timeframe": "1h",
        "side": side,
        "ts": format_utc(ts),
        "features": {"f1": 1.0},
        "feature_schema_version": 1,
    }


async def publish(
    nc: NatsClient, subject: str, body: dict[str, Any] | bytes, *, msg_id: str
) -> None:
    """Publish with a plain NATS client (JetStream ack awaited)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    await nc.jetstream().publish(subject, data, stream=STREAM, headers={"Nats-Msg-Id": msg_id})


async def publish_event(nc: NatsClient, event: Event) -> None:
    """Publish an event model as producers do (Nats-Msg-Id from the event)."""
    await publish(nc, event.subject, event.to_json_bytes(), msg_id=event.message_id())


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def fetch_all(
    nc: NatsClient, subject: str, *, stream: str = STREAM, idle_s: float = 1.0
) -> list[Any]:
    """Every message of ``subject`` in ``stream`` (reads until a fetch comes back empty)."""
    sub = await nc.jetstream().pull_subscribe(subject, stream=stream, durable=None)
    got: list[Any] = []
    try:
        while True:
            try:
                batch = await sub.fetch(500, timeout=idle_s)
            except TimeoutError:
                break
            for msg in batch:
                await msg.ack()
            got += batch
    finally:
        await sub.unsubscribe()
    return got
