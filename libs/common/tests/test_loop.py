"""The event-loop lag monitor and the shared time slice."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, Gauge, Histogram

from hindsight.common.loop import LoopLagMonitor, TimeSlice
from hindsight.common.metrics import EVENT_LOOP_LAG


@pytest.mark.unit
async def test_the_monitor_sees_a_blocked_loop() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("lag", "lag", registry=registry)
    gauge = Gauge("lag_max", "lag max", registry=registry)
    monitor = LoopLagMonitor(interval_s=0.01, histogram=histogram, gauge=gauge)
    await monitor.start()
    try:
        await asyncio.sleep(0.03)
        time.sleep(0.1)  # holds the loop: the monitor wakes at least ~0.1 s late
        await asyncio.sleep(0.03)
    finally:
        await monitor.stop()
    # Lower bounds only: a blocked loop can only make the lag larger.
    assert monitor.peak_s >= 0.08
    assert registry.get_sample_value("lag_max") >= 0.08
    assert registry.get_sample_value("lag_count") >= 2


@pytest.mark.unit
def test_the_lag_metric_has_the_name_dashboards_use() -> None:
    assert EVENT_LOOP_LAG._name == "hindsight_event_loop_lag_seconds"


@pytest.mark.unit
async def test_tasks_sharing_a_slice_all_yield_once_it_is_spent() -> None:
    now = [0.0]
    shared = TimeSlice(0.002, clock=lambda: now[0])
    order: list[str] = []
    loop = asyncio.get_running_loop()

    async def worker(name: str) -> None:
        for step in range(2):
            await shared.checkpoint()
            order.append(name)
            if name == "a" and step == 0:  # a handler becomes ready during the slice
                loop.call_soon(order.append, "handler")
            now[0] += 0.0015  # each step spends 1.5 ms of the 2 ms budget

    await asyncio.gather(worker("a"), worker("b"), worker("c"))
    # a spends the first slice; b and c yield, the handler runs, then b spends the next
    # slice and c (which came back in the same pass) waits for a third one.
    assert order == ["a", "a", "handler", "b", "b", "c", "c"]
