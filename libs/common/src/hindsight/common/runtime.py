"""A service's life: start its parts in order, run until SIGINT/SIGTERM, stop in reverse.

``app.py`` of each service builds its parts (broker, database pool, gRPC and HTTP
servers) and hands them to :func:`serve`; nothing here knows what a service does.
:func:`serve` also runs the event-loop lag monitor (``hindsight_event_loop_lag_seconds``)
from before the first part starts, so every service exports it from its first scrape, and
freezes the start-up heap once every part runs (full garbage collections would otherwise
walk it, holding the loop ~0.1 s each).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Protocol

from faststream.nats import NatsBroker

from hindsight.common.broker import DLQ_STREAM, ensure_streams
from hindsight.common.errors import UnavailableError
from hindsight.common.loop import LoopLagMonitor, freeze_heap
from hindsight.common.metrics import (
    CONSUMER_ACK_PENDING,
    CONSUMER_PENDING,
    DLQ_MESSAGES,
    DLQ_SUBJECTS,
)
from hindsight.common.settings import BaseServiceSettings
from hindsight.common.tasks import cancel_and_wait

__all__ = ["BrokerPart", "Part", "PartGroup", "Startable", "nats_ready", "serve"]

logger = logging.getLogger(__name__)


class Startable(Protocol):
    """Anything with an async start and stop (servers, brokers, pools)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Part:
    """A named part of a service, for ordered start/stop and readable logs."""

    name: str
    component: Startable


class BrokerPart:
    """A faststream broker as a part: connect, make sure the streams exist, then consume.

    While running, it refreshes every ``lag_every_s`` the lag gauges of the service's own
    durable consumers (JetStream consumer info: ``num_pending`` not yet delivered,
    ``num_ack_pending`` delivered but not acknowledged) and the DLQ depth per subject.
    """

    def __init__(
        self, broker: NatsBroker, settings: BaseServiceSettings, *, lag_every_s: float = 15.0
    ) -> None:
        self.broker = broker
        self.settings = settings
        self.lag_every_s = lag_every_s
        self._lag_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.connect()
        await ensure_streams(self.broker, self.settings)
        await self.broker.start()
        # SUBs are buffered by the client: a PING/PONG round trip makes sure the server has
        # registered every subscription (a request-reply responder included) once start
        # returns, so "started" means "answering" (a request right after would see no
        # responders otherwise).
        await self.broker.connection.flush(timeout=10)
        if self.lag_every_s > 0:
            self._lag_task = asyncio.create_task(self._lag_loop(), name="consumer-lag")

    async def stop(self) -> None:
        await cancel_and_wait(self._lag_task)
        self._lag_task = None
        await self.broker.stop()

    def durables(self) -> list[tuple[str, str]]:
        """(stream, durable) of every durable subscriber of this broker."""
        found = []
        for subscriber in self.broker.subscribers:
            durable = getattr(getattr(subscriber, "config", None), "durable_name", None)
            stream = getattr(getattr(subscriber, "stream", None), "name", None)
            if durable and stream:
                found.append((str(stream), str(durable)))
        return found

    async def refresh_lag(self) -> None:
        """Set the consumer-lag and DLQ-depth gauges from JetStream once."""
        js = self.broker.connection.jetstream()
        for stream, durable in self.durables():
            try:
                info = await js.consumer_info(stream, durable)
            except Exception as exc:  # not created yet: the others and the DLQ still count
                logger.debug("consumer info %s/%s failed: %s", stream, durable, exc)
                continue
            CONSUMER_PENDING.labels(stream, durable).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(stream, durable).set(info.num_ack_pending or 0)
        dlq = await js.stream_info(DLQ_STREAM, subjects_filter=">")
        counts = dlq.state.subjects or {}
        # A subject purged from the DLQ leaves JetStream's list: it reads 0, not its last count.
        for subject in {*DLQ_SUBJECTS, *counts}:
            DLQ_MESSAGES.labels(subject).set(counts.get(subject, 0))

    async def _lag_loop(self) -> None:
        while True:
            try:
                await self.refresh_lag()
            except Exception as exc:  # NATS away or a consumer not created yet: next round
                logger.debug("consumer lag refresh failed: %s", exc)
            await asyncio.sleep(self.lag_every_s)


class PartGroup:
    """A service's parts, started in order and stopped in reverse (in-process tests use
    ``start``/``stop``; the process hands ``parts`` to :func:`serve`)."""

    parts: list[Part]

    async def start(self) -> None:
        """Start every part in order; on a failure, stop the ones already started."""
        started: list[Part] = []
        try:
            for part in self.parts:
                await part.component.start()
                started.append(part)
        except BaseException:
            for part in reversed(started):
                await part.component.stop()
            raise

    async def stop(self) -> None:
        """Stop every part in reverse order."""
        for part in reversed(self.parts):
            await part.component.stop()


def nats_ready(broker: NatsBroker) -> Callable[[], Awaitable[None]]:
    """A readiness check that fails while the broker is disconnected."""

    async def check() -> None:
        try:
            connected = broker.connection.is_connected
        except Exception as exc:  # not connected yet: faststream raises on access
            raise UnavailableError("NATS not connected") from exc
        if not connected:
            raise UnavailableError("NATS connection lost")

    return check


async def serve(
    service: str,
    parts: Sequence[Part],
    *,
    stop_event: asyncio.Event | None = None,
    stop_timeout: float = 30.0,
) -> None:
    """Start ``parts`` in order, wait for a signal (or ``stop_event``), stop in reverse.

    If a part fails to start, the ones already started are stopped and the error is
    raised, so the supervisor restarts the process instead of it limping on.
    """
    stopping = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stopping.set)
            installed.append(sig)
    lag = LoopLagMonitor()
    await lag.start()
    started: list[Part] = []
    try:
        for part in parts:
            logger.info("starting %s", part.name, extra={"part": part.name})
            await part.component.start()
            started.append(part)
        freeze_heap()  # what start-up built is never walked by a full collection again
        logger.info("%s started", service, extra={"parts": [p.name for p in parts]})
        await stopping.wait()
        logger.info("%s stopping", service)
    finally:
        for part in reversed(started):
            try:
                await asyncio.wait_for(part.component.stop(), stop_timeout)
            except Exception:
                logger.exception("stopping %s failed", part.name, extra={"part": part.name})
        for sig in installed:
            loop.remove_signal_handler(sig)
        await lag.stop()
    logger.info("%s stopped", service)
