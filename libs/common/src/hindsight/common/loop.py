"""Keeping the event loop responsive: a lag monitor and a time-sliced yield.

A service answers gRPC and HTTP on one asyncio loop; background work (publishing a
backlog, folding a replay) that runs for long without awaiting something that really
suspends starves every handler. :class:`TimeSlice` lets such work yield after a bounded
amount of loop time; :class:`LoopLagMonitor` measures how late the loop wakes a sleeper,
which is how long handlers waited, and exports it as ``hindsight_event_loop_lag_seconds``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Final

from prometheus_client import Gauge, Histogram

from hindsight.common.metrics import EVENT_LOOP_LAG, EVENT_LOOP_LAG_MAX
from hindsight.common.tasks import cancel_and_wait

__all__ = ["SLICE_S", "LoopLagMonitor", "TimeSlice", "freeze_heap"]

SLICE_S: Final = 0.002
"""Loop time background work may take before it yields (well under a Score deadline)."""


def freeze_heap() -> None:
    """Collect once, then hide every object alive now from later full collections.

    After start-up a service holds what its imports built (modules, classes, protobuf
    descriptors, models); a full (generation 2) collection walks all of it, which took
    ~110 ms of loop time in a test process, during which no handler runs. Frozen, those
    objects are never walked again; garbage made later is collected as before.
    """
    gc.collect()
    gc.freeze()


class TimeSlice:
    """Yield to the loop once ``budget_s`` of work has run since the slice began.

    Shared by several tasks, the slice bounds one loop pass for all of them together:
    the first task over budget schedules the next slice to begin in the next pass, every
    task over budget yields, and tasks that come back check the budget again (so they do
    not each start a fresh slice of their own).
    """

    def __init__(
        self, budget_s: float = SLICE_S, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget_s = budget_s
        self._clock = clock
        self._since = clock()
        self._restart_scheduled = False

    async def checkpoint(self) -> None:
        """Return at once while within budget; otherwise yield until a new slice begins."""
        while self._clock() - self._since >= self.budget_s:
            if not self._restart_scheduled:
                # Queued before the yielders' resumptions (FIFO), so it runs first in the
                # next pass; handlers made ready by I/O in the meantime run in between.
                asyncio.get_running_loop().call_soon(self._restart)
                self._restart_scheduled = True
            await asyncio.sleep(0)

    def _restart(self) -> None:
        self._since = self._clock()
        self._restart_scheduled = False


class LoopLagMonitor:
    """Sleeps ``interval_s`` again and again and records how late it woke.

    Every lag goes to the histogram; the gauge holds the largest one of the current and
    the previous ``window_s`` window, so a scrape every 15 s sees a short stall. ``peak_s``
    is the largest lag since start (for tests and logs).
    """

    def __init__(
        self,
        *,
        interval_s: float = 0.05,
        window_s: float = 10.0,
        histogram: Histogram = EVENT_LOOP_LAG,
        gauge: Gauge = EVENT_LOOP_LAG_MAX,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._histogram = histogram
        self._gauge = gauge
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.peak_s = 0.0

    async def start(self) -> None:
        """Start measuring in a background task."""
        if self._task is None:
            self._gauge.set(0.0)
            self._task = asyncio.create_task(self._run(), name="event-loop-lag")

    async def stop(self) -> None:
        """Stop measuring."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        clock, interval = self._clock, self.interval_s
        window_ends = clock() + self.window_s
        current = previous = 0.0
        while True:
            due = clock() + interval
            await asyncio.sleep(interval)
            now = clock()
            lag = max(0.0, now - due)
            self._histogram.observe(lag)
            self.peak_s = max(self.peak_s, lag)
            if now >= window_ends:
                previous, current = current, 0.0
                window_ends = now + self.window_s
            current = max(current, lag)
            self._gauge.set(max(current, previous))
