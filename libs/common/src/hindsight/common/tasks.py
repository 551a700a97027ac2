"""Background tasks owned by a part: started once, stopped by cancelling and waiting.

Every service part that runs a loop beside its handlers (a refresh, a retention pass, a
replay, a worker) holds a :class:`BackgroundTask`: ``start(coro)`` creates the named task,
``stop()`` cancels it and waits until it has finished, so that nothing of the part runs
after ``stop`` returns. An exception the task ended with is logged, never raised from
``stop`` (a part's shutdown must not fail because its loop failed earlier).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundTask", "cancel_and_wait"]

logger = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait for it; its exception, if it had one, is logged."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled ourselves while waiting: pass it on
    except Exception:
        logger.exception("background task %s had failed", task.get_name())


class BackgroundTask:
    """One named asyncio task of a part."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[Any] | None = None

    @property
    def running(self) -> bool:
        """Started and not finished."""
        return self._task is not None and not self._task.done()

    def start(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as this task (a running one is a bug of the caller)."""
        if self.running:
            coro.close()
            raise RuntimeError(f"background task {self.name} is already running")
        self._task = asyncio.create_task(coro, name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait until it has finished (no-op when not started)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
