"""Publishing off the request path: queue now (O(1), never awaits), publish in batches.

The scorer and the gateway log every answer as ``prediction.logged`` this way, so a slow
or absent NATS never delays an answer: a bounded queue drops its oldest entry when full,
and every record that could not be logged is counted by reason (``queue_full``,
``publish_failed``, ``shutdown``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Generic, TypeVar

from faststream.nats import NatsBroker
from prometheus_client import Counter

from hindsight.common.broker import publish_event
from hindsight.common.events import Event

__all__ = ["BackgroundPublisher", "is_connected"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_connected(broker: NatsBroker) -> bool:
    """True while the broker has a live connection."""
    try:
        return bool(broker.connection.is_connected)
    except Exception:  # faststream raises before the first connect
        return False


class BackgroundPublisher(Generic[T]):
    """Turns queued items into events with ``to_event`` and publishes them in batches.

    ``published`` counts what JetStream acknowledged; ``unpublished`` (one label: the
    reason) counts what was lost.
    """

    def __init__(
        self,
        broker: NatsBroker,
        to_event: Callable[[T], Event],
        *,
        capacity: int,
        batch_size: int,
        published: Counter,
        unpublished: Counter,
        name: str,
    ) -> None:
        self.broker = broker
        self.to_event = to_event
        self.batch_size = batch_size
        self.published = published
        self.unpublished = unpublished
        self.name = name
        self._pending: deque[T] = deque(maxlen=capacity)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._queue_full = unpublished.labels("queue_full")

    def put(self, item: T) -> None:
        """Queue one item; when the queue is full the oldest one is dropped (counted)."""
        pending = self._pending
        if len(pending) == pending.maxlen:
            self._queue_full.inc()
        pending.append(item)
        self._wake.set()

    @property
    def backlog(self) -> int:
        """Items waiting to be published."""
        return len(self._pending)

    async def start(self) -> None:
        """Start the publishing task."""
        self._task = asyncio.create_task(self._drain(), name=self.name)

    async def stop(self, *, flush_timeout: float = 2.0) -> None:
        """Publish what is queued (bounded by ``flush_timeout``), then stop."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._pending and is_connected(self.broker):
            with suppress(TimeoutError):
                await asyncio.wait_for(self._flush_all(), flush_timeout)
        if self._pending:
            self.unpublished.labels("shutdown").inc(len(self._pending))
            self._pending.clear()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if not is_connected(self.broker):
                    await asyncio.sleep(0.25)
                    continue
                await self._publish_batch()

    async def _flush_all(self) -> None:
        while self._pending:
            await self._publish_batch()

    async def _publish_batch(self) -> None:
        n = min(self.batch_size, len(self._pending))
        events = [self.to_event(self._pending.popleft()) for _ in range(n)]
        results = await asyncio.gather(
            *(publish_event(self.broker, event) for event in events), return_exceptions=True
        )
        failed = sum(1 for r in results if isinstance(r, BaseException))
        if failed:
            self.unpublished.labels("publish_failed").inc(failed)
            logger.warning("%s: could not publish %d events", self.name, failed)
        self.published.inc(len(results) - failed)
