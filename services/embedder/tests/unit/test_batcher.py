"""Micro-batcher: flush at N, flush at T, per-item failures stay per item."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from hindsight.embedder.domain.batcher import MicroBatcher
from hindsight.embedder.models import ClipModel

pytestmark = pytest.mark.unit


def _texts_batcher(
    model: ClipModel, *, max_size: int, max_wait_s: float
) -> MicroBatcher[str, object]:
    return MicroBatcher(
        lambda items: list(model.encode_texts(items)), max_size=max_size, max_wait_s=max_wait_s
    )


async def test_flushes_when_n_items_are_waiting(fake_clip: ClipModel) -> None:
    # T is a minute: only the size can have flushed these batches.
    batcher = _texts_batcher(fake_clip, max_size=4, max_wait_s=60.0)
    await batcher.start()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(f"text {i}") for i in range(8))), 10
        )
    finally:
        await batcher.stop()
    assert fake_clip.batches == [4, 4]  # type: ignore[attr-defined]
    expected = fake_clip.encode_texts(["text 5"])[0]
    assert np.allclose(results[5], expected)


async def test_flushes_after_t_with_fewer_than_n_items(fake_clip: ClipModel) -> None:
    # N is 100: only the timeout can have flushed these three.
    batcher = _texts_batcher(fake_clip, max_size=100, max_wait_s=0.02)
    await batcher.start()
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(t) for t in ("a", "b", "c"))), 10
        )
    finally:
        await batcher.stop()
    assert fake_clip.batches == [3]  # type: ignore[attr-defined]
    assert len(results) == 3


async def test_a_failing_item_fails_alone(fake_clip: ClipModel) -> None:
    fake_clip.fail_on = {"poison"}  # type: ignore[attr-defined]
    batcher = _texts_batcher(fake_clip, max_size=3, max_wait_s=60.0)
    await batcher.start()
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(batcher.submit(t) for t in ("ok-1", "poison", "ok-2")), return_exceptions=True
            ),
            10,
        )
    finally:
        await batcher.stop()
    assert isinstance(outcomes[1], RuntimeError)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert fake_clip.batches == [3, 1, 1, 1]  # type: ignore[attr-defined]


async def test_an_exception_result_reaches_only_its_caller() -> None:
    def half(items: Sequence[int]) -> list[int | BaseException]:
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(half, max_size=4, max_wait_s=60.0)
    await batcher.start()
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True), 10
        )
    finally:
        await batcher.stop()
    assert outcomes[0] == 0 and outcomes[2] == 20
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "odd 1"


async def test_submit_before_start_is_refused() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(list, max_size=2, max_wait_s=0.01)
    with pytest.raises(RuntimeError, match="not running"):
        await batcher.submit(1)
