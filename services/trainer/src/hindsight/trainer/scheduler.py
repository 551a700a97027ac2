"""The schedule as a small asyncio task: sleep until the next fire time, request a run."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from datetime import UTC, datetime

from hindsight.trainer.domain.schedule import Schedule, next_fire
from hindsight.trainer.runs import RunService

__all__ = ["Scheduler"]

logger = logging.getLogger(__name__)
_MAX_SLEEP_S = 60.0  # re-check the wall clock at least every minute (suspend, clock steps)


class Scheduler:
    """Daily incremental / weekly full runs (a Part: start and stop)."""

    def __init__(self, runs: RunService, schedule: Schedule, *, enabled: bool) -> None:
        self.runs = runs
        self.schedule = schedule
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the loop (no-op when disabled)."""
        if self.enabled:
            self._task = asyncio.create_task(self._loop(), name="trainer-schedule")

    async def stop(self) -> None:
        """Cancel the loop."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            at, mode = next_fire(datetime.now(UTC), self.schedule)
            logger.info("next scheduled run", extra={"at": at.isoformat(), "mode": mode})
            while (left := (at - datetime.now(UTC)).total_seconds()) > 0:
                await asyncio.sleep(min(left, _MAX_SLEEP_S))
            try:
                await self.runs.request(mode=mode, trigger="schedule", reason=f"scheduled {mode}")
            except Exception:
                logger.exception("scheduled run could not be started")
