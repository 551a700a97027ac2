"""Micro-batching: callers submit one item and await its result; a worker flushes a batch
when it holds N items or when its oldest item has waited T seconds, and runs the batch
function in a worker thread so the event loop keeps fetching and decoding meanwhile.

A batch function returns one result per item, in order; an item's result may be an
exception, which is raised to that item's caller only. When the batch function raises,
each item is retried alone, so one bad item cannot fail its neighbours.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hindsight.common.tasks import cancel_and_wait

__all__ = ["BatchFunction", "BatchObserver", "MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[Sequence[T]], Sequence[R | BaseException]]
BatchObserver = Callable[[int, float], None]
"""Called after each batch with (batch size, seconds in the batch function)."""


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[T, R]):
    """Collects submitted items into batches of at most ``max_size`` for ``fn``."""

    def __init__(
        self,
        fn: BatchFunction[T, R],
        *,
        max_size: int,
        max_wait_s: float,
        name: str = "batcher",
        observe: BatchObserver | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be >= 1")
        self._fn = fn
        self.max_size = max_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.name = name
        self._observe = observe
        self._queue: asyncio.Queue[_Pending[T, R]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # One thread per batcher: batches of one model never overlap.
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Start the worker task."""
        if self._task is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop the worker; items still queued fail with :class:`RuntimeError`."""
        await cancel_and_wait(self._task)
        self._task = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError(f"{self.name} stopped"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (or its own exception)."""
        if self._task is None or self._task.done():
            raise RuntimeError(f"{self.name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            await self._flush(batch)

    async def _collect(self) -> list[_Pending[T, R]]:
        first = await self._queue.get()
        batch = [first]
        deadline = first.enqueued + self.max_wait_s
        while len(batch) < self.max_size:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    batch.append(self._queue.get_nowait())
                else:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except (asyncio.QueueEmpty, TimeoutError):
                break
        return batch

    async def _flush(self, batch: list[_Pending[T, R]]) -> None:
        live = [p for p in batch if not p.future.done()]  # a caller may have given up
        if not live:
            return
        loop = asyncio.get_running_loop()
        items = [p.item for p in live]
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._call, items)
        except Exception:
            # Isolate the culprit: every item alone, each gets its own result or error.
            results = []
            for item in items:
                try:
                    [one] = await loop.run_in_executor(self._executor, self._call, [item])
                except Exception as exc:
                    one = exc
                results.append(one)
        if self._observe is not None:
            self._observe(len(items), time.perf_counter() - started)
        for pending, result in zip(live, results, strict=True):
            if pending.future.done():
                continue
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    def _call(self, items: Sequence[T]) -> list[R | BaseException]:
        results = list(self._fn(items))
        if len(results) != len(items):
            raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        return results
