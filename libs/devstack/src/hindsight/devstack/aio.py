"""Run a coroutine to completion from synchronous code, whatever loop is running."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a fresh event loop in a worker thread and return its result.

    A worker thread keeps this usable from synchronous pytest fixtures and from code
    called while another event loop runs in this thread; the caller's loop is untouched.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hindsight-run-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
