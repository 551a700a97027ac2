"""Replay a few subjects from the start of the stream, then follow them live.

The scorer (``model.deployed``) and the gateway (``model.deployed``, ``ab.completed``) need
every message on every replica, so each uses an **ordered ephemeral consumer** per subject
with deliver policy ALL instead of a shared durable (replicas of a durable split the
messages). The client re-creates an ordered consumer after a gap or reconnect from the
last sequence it saw; the server deletes it when the replica goes away. No acks: what the
callbacks do with a message must be idempotent.

The connection is made in the background and retried forever, so a service starts and
serves with NATS down; ``replayed`` is set once the history (possibly empty) was handed
over, in stream order.

A long history, or a burst of live messages after a reconnect, is taken from the queue
without the queue ever suspending (``Queue.get`` returns at once while it holds
messages), so the feed yields to the service's gRPC/HTTP handlers through a shared
:class:`~hindsight.common.loop.TimeSlice`; callbacks that fold a long history get it as
``slice`` and call its ``checkpoint`` per message too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError as JsNotFoundError

from hindsight.common.broker import STREAM, ensure_streams
from hindsight.common.loop import TimeSlice
from hindsight.common.settings import BaseServiceSettings
from hindsight.common.tasks import cancel_and_wait

__all__ = ["ReplayFeed"]

logger = logging.getLogger(__name__)


class ReplayFeed:
    """``on_replayed(history)`` once, in stream order, then ``on_message(msg)`` live.

    ``slice`` is the feed's :class:`TimeSlice`: callbacks that loop over many messages
    await ``slice.checkpoint()`` in the loop.
    """

    def __init__(
        self,
        broker: NatsBroker,
        settings: BaseServiceSettings,
        subjects: Sequence[str],
        *,
        on_replayed: Callable[[list[Msg]], Awaitable[None]],
        on_message: Callable[[Msg], Awaitable[None]],
        name: str,
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.subjects = tuple(subjects)
        self.name = name
        self._on_replayed = on_replayed
        self._on_message = on_message
        self.replayed = asyncio.Event()
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._pending_subjects: set[str] = set()
        self.slice = TimeSlice()

    async def start(self) -> None:
        """Start connecting and consuming in the background; returns at once."""
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop consuming and close the connection."""
        await cancel_and_wait(self._task)
        self._task = None
        with suppress(Exception):
            await self.broker.stop()

    async def _run(self) -> None:
        await self.broker.connect()  # nats-py retries the first connect forever
        logger.info("%s: connected to NATS", self.name)
        delay = 0.5
        while True:
            try:
                await ensure_streams(self.broker, self.settings)
                await self._subscribe()
                break
            except Exception as exc:
                logger.warning("JetStream not usable yet (%s), retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await self._consume()

    async def _subscribe(self) -> None:
        js = self.broker.connection.jetstream()
        pending: set[str] = set()
        for subject in self.subjects:
            with suppress(JsNotFoundError):
                await js.get_last_msg(STREAM, subject)
                pending.add(subject)  # it has history: replay is done when it is drained
        self._pending_subjects = pending

        async def enqueue(msg: Msg) -> None:
            self._queue.put_nowait(msg)
            # nats-py hands a whole read buffer over without suspending in between.
            await self.slice.checkpoint()

        for subject in self.subjects:
            await js.subscribe(
                subject,
                stream=STREAM,
                cb=enqueue,
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
            )

    async def _consume(self) -> None:
        history: list[Msg] = []
        if not self._pending_subjects:
            await self._finish_replay(history)
        while True:
            msg = await self._queue.get()
            await self.slice.checkpoint()
            if self.replayed.is_set():
                try:
                    await self._on_message(msg)
                except Exception:
                    logger.exception("%s: handling %s failed", self.name, msg.subject)
                continue
            history.append(msg)
            if msg.metadata.num_pending == 0:
                self._pending_subjects.discard(msg.subject)
                if not self._pending_subjects:
                    await self._finish_replay(history)

    async def _finish_replay(self, history: list[Msg]) -> None:
        history.sort(key=lambda m: m.metadata.sequence.stream)
        logger.info("%s: replayed %d messages", self.name, len(history))
        try:
            await self._on_replayed(history)
        finally:
            self.replayed.set()
