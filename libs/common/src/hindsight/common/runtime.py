"""A service's life: start its parts in order, run until SIGINT/SIGTERM, stop in reverse.

``app.py`` of each service builds its parts (broker, database pool, gRPC and HTTP
servers) and hands them to :func:`serve`; nothing here knows what a service does.
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

from hindsight.common.broker import ensure_streams
from hindsight.common.errors import UnavailableError
from hindsight.common.settings import BaseServiceSettings

__all__ = ["BrokerPart", "Part", "Startable", "nats_ready", "serve"]

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
    """A faststream broker as a part: connect, make sure the streams exist, then consume."""

    def __init__(self, broker: NatsBroker, settings: BaseServiceSettings) -> None:
        self.broker = broker
        self.settings = settings

    async def start(self) -> None:
        await self.broker.connect()
        await ensure_streams(self.broker, self.settings)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()


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
    started: list[Part] = []
    try:
        for part in parts:
            logger.info("starting %s", part.name, extra={"part": part.name})
            await part.component.start()
            started.append(part)
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
    logger.info("%s stopped", service)
