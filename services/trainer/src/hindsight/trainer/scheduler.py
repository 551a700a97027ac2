"""The schedule as a small asyncio task: sleep until the next fire time, request a run."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from hindsight.common.tasks import cancel_and_wait
from hindsight.trainer.domain.schedule import Schedule, next_fire
from hindsight.trainer.family_trigger import FamilyDataTrigger
from hindsight.trainer.runs import RunService

__all__ = ["Scheduler"]

logger = logging.getLogger(__name__)
_MAX_SLEEP_S = 60.0  # re-check the wall clock at least every minute (suspend, clock steps)


class Scheduler:
    """Daily incremental / weekly full runs, plus runs when enough new outcomes arrived."""

    def __init__(
        self,
        runs: RunService,
        schedule: Schedule,
        *,
        enabled: bool,
        families: FamilyDataTrigger | None = None,
    ) -> None:
        self.runs = runs
        self.families = families
        """Model families' data trigger (labels); None: families train only on request."""
        self.schedule = schedule
        self.enabled = enabled
        self._task: asyncio.Task[None] | None = None
        self._data_task: asyncio.Task[None] | None = None
        self.data_check_s = 10.0

    async def start(self) -> None:
        """Start the clock loop (when enabled) and the data trigger (when configured)."""
        if self.enabled:
            self._task = asyncio.create_task(self._loop(), name="trainer-schedule")
        families = self.families is not None and self.families.enabled
        if self.runs.settings.auto_train_outcomes > 0 or families:
            self._data_task = asyncio.create_task(self._data_loop(), name="trainer-data-trigger")

    async def stop(self) -> None:
        """Cancel the loops."""
        for task in (self._task, self._data_task):
            await cancel_and_wait(task)
        self._task = self._data_task = None

    async def _data_loop(self) -> None:
        while True:
            await asyncio.sleep(self.data_check_s)
            models = sorted(self.runs.specs) if self.runs.settings.auto_train_outcomes else []
            for name in models:
                try:
                    run = await self.runs.request_if_data_due(model_name=name)
                except Exception:
                    logger.exception("data-triggered run of %s could not be started", name)
                    continue
                if run is not None:
                    logger.info("data-triggered run", extra={"run_id": run.run_id})
            trigger = self.families
            if trigger is None or not trigger.enabled:
                continue
            for family in trigger.families():
                try:
                    run = await trigger.request_if_due(family)
                except Exception:
                    logger.exception("data-triggered run of %s could not be started", family)
                    continue
                if run is not None:
                    logger.info("data-triggered family run", extra={"run_id": run.run_id})

    async def _loop(self) -> None:
        while True:
            at, mode = next_fire(datetime.now(UTC), self.schedule)
            logger.info("next scheduled run", extra={"at": at.isoformat(), "mode": mode})
            while (left := (at - datetime.now(UTC)).total_seconds()) > 0:
                await asyncio.sleep(min(left, _MAX_SLEEP_S))
            for name in sorted(self.runs.specs):  # every model with a data spec
                try:
                    await self.runs.request(
                        model_name=name, mode=mode, trigger="schedule", reason=f"scheduled {mode}"
                    )
                except Exception:
                    logger.exception("scheduled run of %s could not be started", name)
