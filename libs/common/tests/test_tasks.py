"""BackgroundTask / cancel_and_wait: nothing of a part runs after stop returns."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hindsight.common.tasks import BackgroundTask, cancel_and_wait

pytestmark = pytest.mark.unit


async def test_stop_cancels_and_waits_for_the_loop() -> None:
    ticks: list[int] = []
    cleaned = asyncio.Event()

    async def loop() -> None:
        try:
            while True:
                ticks.append(1)
                await asyncio.sleep(0.001)
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            cleaned.set()

    task = BackgroundTask("ticker")
    task.start(loop())
    await asyncio.sleep(0.01)
    assert task.running
    await task.stop()
    assert cleaned.is_set() and not task.running
    seen = len(ticks)
    await asyncio.sleep(0.01)
    assert len(ticks) == seen  # nothing ran after stop
    await task.stop()  # twice is fine


async def test_a_second_start_while_running_is_refused() -> None:
    task = BackgroundTask("once")
    task.start(asyncio.sleep(10))
    with pytest.raises(RuntimeError, match="once is already running"):
        task.start(asyncio.sleep(10))
    await task.stop()
    task.start(asyncio.sleep(0))  # after stop it may start again
    await task.stop()


async def test_a_failed_task_is_logged_not_raised_from_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def boom() -> None:
        raise ValueError("broken loop")

    task = asyncio.create_task(boom(), name="boom")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="hindsight.common.tasks"):
        await cancel_and_wait(task)
    assert "background task boom had failed" in caplog.text
    await cancel_and_wait(None)


async def test_the_waiter_being_cancelled_is_passed_on() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(10)  # slow to stop

    inner = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    inner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await inner
