"""Publishing off the request path: queue now (O(1), never awaits), publish in the background.

The scorer and the gateway log every answer as ``prediction.logged`` this way, so a slow
or absent NATS never delays an answer: a bounded queue drops its oldest entry when full,
and every record that could not be logged is counted by reason (``queue_full``,
``publish_failed``, ``shutdown``).

Publishing shares the event loop with the gRPC handlers, so it must never hold the loop
for long, however large the backlog (after NATS comes back, thousands of records wait):
at most ``max_in_flight`` publishes await their ack at once, every publish starts behind a
:class:`~hindsight.common.loop.TimeSlice` checkpoint (the publishers yield after ~2 ms of
loop work), and the backlog that built up while NATS was away is drained at no more than
``catch_up_per_s`` events a second, so catching up takes a bounded share of the loop.

Publishing also costs the loop per wake-up, not only per event: a publish written and
acknowledged alone is a task, a socket write and an ack read of its own. With ``linger_s``
(Kafka's ``linger.ms``) the publisher waits that long after the first queued item, so the
items of that window go out together (one socket write by the NATS client's flusher, their
acks read together): at 100 answers/s a 50 ms linger turns 100 wake-ups a second into 20.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Generic, TypeVar

from faststream.nats import NatsBroker
from prometheus_client import Counter

from hindsight.common.broker import publish_event
from hindsight.common.events import Event
from hindsight.common.loop import TimeSlice
from hindsight.common.tasks import cancel_and_wait

__all__ = ["BackgroundPublisher", "is_connected"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_connected(broker: NatsBroker) -> bool:
    """True while the broker has a live connection."""
    try:
        return bool(broker.connection.is_connected)
    except Exception:  # faststream raises before the first connect
        return False


class _Rate:
    """A token bucket: :meth:`take` waits (sleeping, never spinning) for one token."""

    def __init__(self, per_s: float, burst: int) -> None:
        self.per_s = per_s
        self.burst = float(max(1, burst))
        self._tokens = self.burst
        self._at = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_s)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self._tokens) / self.per_s)


class BackgroundPublisher(Generic[T]):
    """Turns queued items into events with ``to_event`` and publishes them in the background.

    ``published`` counts what JetStream acknowledged; ``unpublished`` (one label: the
    reason) counts what was lost. ``linger_s`` after the first queued item, what is queued is
    published together; ``max_in_flight`` publishes await their ack at once;
    after a disconnect, the backlog is published at ``catch_up_per_s`` at most until it
    is down to ``max_in_flight`` items.
    """

    def __init__(
        self,
        broker: NatsBroker,
        to_event: Callable[[T], Event],
        *,
        capacity: int,
        max_in_flight: int,
        published: Counter,
        unpublished: Counter,
        name: str,
        catch_up_per_s: float = 5000.0,
        slice_s: float | None = None,
        linger_s: float = 0.0,
    ) -> None:
        if max_in_flight < 1 or catch_up_per_s <= 0 or linger_s < 0:
            raise ValueError("max_in_flight >= 1, catch_up_per_s > 0, linger_s >= 0 required")
        self.broker = broker
        self.to_event = to_event
        self.max_in_flight = max_in_flight
        self.published = published
        self.unpublished = unpublished
        self.name = name
        self.linger_s = linger_s
        self._pending: deque[T] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._queue_full = unpublished.labels("queue_full")
        self._publish_failed = unpublished.labels("publish_failed")
        self._slice = TimeSlice() if slice_s is None else TimeSlice(slice_s)
        self._catch_up = _Rate(catch_up_per_s, burst=max_in_flight)
        self._catching_up = False
        self._failed = 0

    def put(self, item: T) -> None:
        """Queue one item; when the queue is full the oldest one is dropped (counted)."""
        pending = self._pending
        if len(pending) == pending.maxlen:
            self._queue_full.inc()
        pending.append(item)
        self._wake.set()
        if len(pending) >= self.max_in_flight:
            self._full.set()

    @property
    def backlog(self) -> int:
        """Items waiting to be published."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the publishing task."""
        self._task = asyncio.create_task(self._drain(), name=self.name)

    async def stop(self, *, flush_timeout: float = 2.0) -> None:
        """Publish what is queued (bounded by ``flush_timeout``), then stop."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._pending and is_connected(self.broker):
            self._catching_up = False  # stopping: flush as fast as the time slices allow
            with suppress(TimeoutError):
                await asyncio.wait_for(self._publish_pending(), flush_timeout)
        if self._pending:
            self.unpublished.labels("shutdown").inc(len(self._pending))
            self._pending.clear()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            if self.linger_s and len(self._pending) < self.max_in_flight:
                # Let the window's items gather, so they are written and acknowledged
                # together; a full window goes at once.
                self._full.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.linger_s)
            self._wake.clear()
            while self._pending:
                if not is_connected(self.broker):
                    # What piles up now is published at the catch-up rate once NATS is back.
                    self._catching_up = True
                    await asyncio.sleep(0.25)
                    continue
                await self._publish_pending()

    async def _publish_pending(self) -> None:
        """Publish until the queue is empty or NATS is gone, ``max_in_flight`` at a time."""
        workers = min(self.max_in_flight, len(self._pending))
        self._failed = 0
        try:
            await asyncio.gather(*(self._publisher() for _ in range(workers)))
        finally:
            if self._failed:
                logger.warning("%s: could not publish %d events", self.name, self._failed)

    async def _publisher(self) -> None:
        pending = self._pending
        while pending and is_connected(self.broker):
            await self._slice.checkpoint()
            if self._catching_up:
                if len(pending) <= self.max_in_flight:
                    self._catching_up = False
                else:
                    await self._catch_up.take()
            if not pending:
                return
            item = pending.popleft()
            try:
                await publish_event(self.broker, self.to_event(item))
            except Exception as exc:
                self._failed += 1
                self._publish_failed.inc()
                logger.debug("%s: publish failed: %r", self.name, exc)
            else:
                self.published.inc()
