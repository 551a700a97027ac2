"""The background evaluator: ends decided experiments and watches production for degradation.

Every ``evaluate_every_s`` it evaluates the active experiments and checks degradation; an
ingested outcome also wakes it (after ``debounce_s``, so a burst is checked once) for a
degradation check only. It never dies: failures are logged and retried on the next pass.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from hindsight.common.tasks import BackgroundTask
from hindsight.registry.degradation import DegradationMonitor
from hindsight.registry.experiments import Experiments

__all__ = ["Evaluator"]

logger = logging.getLogger(__name__)


class Evaluator:
    """A service part running :meth:`Experiments.evaluate_active` and the monitor."""

    def __init__(
        self,
        experiments: Experiments,
        monitor: DegradationMonitor,
        *,
        every_s: float,
        debounce_s: float,
    ) -> None:
        self.experiments = experiments
        self.monitor = monitor
        self.every_s = every_s
        self.debounce_s = debounce_s
        self._outcomes = asyncio.Event()
        self._task = BackgroundTask("registry-evaluator")

    def outcome_arrived(self) -> None:
        """An outcome with a result was stored: check degradation soon."""
        self._outcomes.set()

    async def tick(self) -> None:
        """One full pass: experiments, then degradation."""
        await self.experiments.evaluate_active()
        await self.monitor.check()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.every_s
        while True:
            timeout = max(0.0, next_tick - loop.time())
            woken = False
            with suppress(TimeoutError):
                await asyncio.wait_for(self._outcomes.wait(), timeout)
                woken = True
            try:
                if woken and loop.time() < next_tick:
                    await asyncio.sleep(self.debounce_s)
                    self._outcomes.clear()
                    await self.monitor.check()
                else:
                    self._outcomes.clear()
                    next_tick = loop.time() + self.every_s
                    await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # database down, ...: keep going
                logger.exception("evaluator pass failed")

    async def start(self) -> None:
        """Run the loop in the background."""
        self._task.start(self._run())

    async def stop(self) -> None:
        """Stop the loop."""
        await self._task.stop()
