"""The background publisher against a real nats-server that goes away and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from hindsight.common.background import BackgroundPublisher, is_connected
from hindsight.common.broker import create_broker, ensure_streams
from hindsight.common.events import PredictionLogged
from hindsight.common.loop import freeze_heap
from hindsight.common.settings import BaseServiceSettings
from hindsight.devstack.ports import free_port
from hindsight.devstack.servers import NatsServer, RunningServer, start_server

pytestmark = pytest.mark.integration

BACKLOG = 3000
# A correctness bound on starvation, not a performance figure: the publisher yields after
# ~2 ms of loop work, so between two wake-ups of a ticker that asks to wake every
# millisecond the loop does a few ms of work at most; 50 ms is generous. The gaps are
# measured in the loop thread's CPU time (time.thread_time), so an OS that leaves the
# process waiting for a core (busy shared CI machines) does not count, while a loop held
# by work does. The unsliced publisher held the loop 200-460 ms flushing ~1,500 events
# (issue 12).
MAX_GAP_S = 0.050


class Nats:
    """A nats-server that a test can stop and start again on the same port and store."""

    def __init__(self, root: Path) -> None:
        self.server = NatsServer(
            store_dir=root / "nats",
            port=free_port(),
            monitor_port=free_port(),
            log_file=root / "nats.log",
            server_name="background-test",
            port_env=None,
            monitor_port_env=None,
        )
        self.running: RunningServer | None = None

    async def start(self) -> None:
        self.running = await asyncio.to_thread(start_server, self.server)

    async def stop(self) -> None:
        if self.running is not None:
            await asyncio.to_thread(self.running.stop)
            self.running = None


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[Nats]:
    server = Nats(tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def counters() -> Iterator[tuple[Counter, Counter]]:
    registry = CollectorRegistry()
    yield (
        Counter("test_published", "published", registry=registry),
        Counter("test_unpublished", "unpublished", ["reason"], registry=registry),
    )


def _event(i: int) -> PredictionLogged:
    return PredictionLogged.create(
        source="test",
        prediction_id=f"p-{i}",
        signal_id=f"s-{i}",
        model_version="v1",
        p_success=0.5,
        fallback=False,
        latency_ms=1.0,
    )


async def _until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_backlog_after_nats_comes_back_never_starves_the_loop(
    nats_server: Nats, counters: tuple[Counter, Counter]
) -> None:
    published, unpublished = counters
    settings = BaseServiceSettings(nats_url=nats_server.server.url)
    broker = create_broker(settings, client_name="background-test")
    await broker.connect()
    await ensure_streams(broker, settings)
    publisher = BackgroundPublisher(
        broker,
        _event,
        capacity=10_000,
        max_in_flight=32,
        published=published,
        unpublished=unpublished,
        name="test-log",
    )
    await publisher.start()
    try:
        # One event first: the first publish of a process imports and builds what the
        # client needs (~0.4 s here); that is start-up, not the backlog this test is about.
        publisher.put(-1)
        await _until(lambda: published._value.get() == 1, 10)
        await nats_server.stop()
        await _until(lambda: not is_connected(broker), 10)
        for i in range(BACKLOG):
            publisher.put(i)

        gaps: list[float] = []  # loop CPU time between two wake-ups of the ticker

        async def ticker() -> None:
            last = time.thread_time()
            while True:
                await asyncio.sleep(0.001)
                now = time.thread_time()
                gaps.append(now - last)
                last = now

        freeze_heap()  # as serve() does once a service runs: no full collection of it all
        await nats_server.start()
        tick = asyncio.create_task(ticker())
        try:
            await _until(lambda: publisher.backlog == 0 and published._value.get() > 0, 60)
            await _until(
                lambda: (
                    published._value.get() + unpublished.labels("publish_failed")._value.get()
                    > BACKLOG
                ),
                30,
            )
        finally:
            tick.cancel()
        assert published._value.get() == BACKLOG + 1, "every queued event is published"
        assert len(gaps) > 100, "the ticker ran during the flush"
        assert max(gaps) < MAX_GAP_S, f"the loop worked {max(gaps) * 1000:.0f} ms without a break"
    finally:
        await publisher.stop(flush_timeout=0.5)
        await broker.stop()


async def test_linger_publishes_a_window_of_items_together(
    nats_server: Nats, counters: tuple[Counter, Counter]
) -> None:
    published, unpublished = counters
    settings = BaseServiceSettings(nats_url=nats_server.server.url)
    broker = create_broker(settings, client_name="background-test")
    await broker.connect()
    await ensure_streams(broker, settings)
    publisher = BackgroundPublisher(
        broker,
        _event,
        capacity=100,
        max_in_flight=8,
        published=published,
        unpublished=unpublished,
        name="test-log",
        linger_s=2.0,
    )
    await publisher.start()
    try:
        for i in range(5):
            publisher.put(i)
        await asyncio.sleep(0.2)
        # Still inside the linger window: nothing is published one by one.
        assert published._value.get() == 0
        assert publisher.backlog == 5
        await _until(lambda: published._value.get() == 5, 10)
        # A window that fills (max_in_flight items) does not wait for the linger.
        for i in range(5, 5 + 8):
            publisher.put(i)
            await asyncio.sleep(0.01)
        await _until(lambda: published._value.get() == 13, 1.5)
    finally:
        await publisher.stop(flush_timeout=0.5)
        await broker.stop()
