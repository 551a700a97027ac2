"""The over-fetch walk: exact when it answers, a fallback otherwise; no I/O."""

from __future__ import annotations

import random

import pytest

from hindsight.memory.domain.overfetch import (
    MAX_CHUNK,
    FallbackMemory,
    OverfetchWalk,
    candidate_count,
)

pytestmark = pytest.mark.unit


def walk(flags: list[bool], *, need: int, asked: int) -> tuple[list[int] | None, int]:
    """Run a walk over candidates whose filter outcome is ``flags``; (answer, reads)."""
    state = OverfetchWalk(need=need, asked=asked, found=len(flags))
    reads = 0
    while (chunk := state.next_chunk()) is not None:
        assert chunk.start == state.read and 0 < len(chunk) <= MAX_CHUNK
        reads += len(chunk)
        state.feed(chunk, [flags[i] for i in chunk])
    return (state.chosen if state.done else None), reads


def test_candidate_count() -> None:
    assert candidate_count(10, factor=20, cap=1000) == 200
    assert candidate_count(100, factor=20, cap=1000) == 1000
    assert candidate_count(201, factor=20, cap=100) == 201  # never fewer than needed
    assert candidate_count(10, factor=0, cap=1000) == 0  # off


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.1, 0.3, 0.9, 1.0])
def test_answers_are_the_first_matches_or_a_fallback(rate: float) -> None:
    rng = random.Random(int(rate * 1000))
    for _ in range(200):
        need = rng.randint(1, 30)
        asked = need * rng.choice([1, 5, 20])
        found = asked if rng.random() < 0.7 else rng.randint(0, asked - 1)
        flags = [rng.random() < rate for _ in range(found)]
        first = [i for i, hit in enumerate(flags) if hit][:need]
        answer, _ = walk(flags, need=need, asked=asked)
        if found < asked:  # the whole collection came back: always answered, exactly
            assert answer == first
        elif len(first) < need:  # not enough among the candidates: must fall back
            assert answer is None
        else:  # enough: answered exactly, or (a cost guess) fell back
            assert answer in (first, None)


def test_common_filters_read_little_and_never_fall_back() -> None:
    flags = [True] * 200
    assert walk(flags, need=10, asked=200) == (list(range(10)), 20)
    flags = [i % 10 == 3 for i in range(200)]  # one in ten, like a symbol filter
    answer, reads = walk(flags, need=10, asked=200)
    assert answer == [i for i in range(200) if i % 10 == 3][:10] and reads <= 200


def test_hopeless_walks_give_up_before_reading_everything() -> None:
    flags = [i == 150 for i in range(1000)]
    answer, reads = walk(flags, need=10, asked=1000)
    assert answer is None and reads < 1000


def test_fallback_memory_skips_a_selective_filter_for_a_while() -> None:
    memory = FallbackMemory(skip=2, size=2)
    assert memory.should_try("a")
    memory.record("a", selective=True)
    assert [memory.should_try("a") for _ in range(3)] == [False, False, True]
    memory.record("a", selective=False)
    assert memory.should_try("a")
    for key in ("a", "b", "c"):  # bounded: the oldest is forgotten
        memory.record(key, selective=True)
    assert memory.should_try("a") and not memory.should_try("b") and not memory.should_try("c")


def test_only_clearly_selective_misses_are_remembered() -> None:
    def run(flags: list[bool]) -> OverfetchWalk:
        state = OverfetchWalk(need=10, asked=200, found=len(flags))
        while (chunk := state.next_chunk()) is not None:
            state.feed(chunk, [flags[i] for i in chunk])
        return state

    narrow = run([i % 25 == 0 for i in range(200)])  # 8 of 200: a common filter, unlucky
    assert not narrow.done and not narrow.selective
    rare = run([i in (120, 180) for i in range(200)])  # 2 of 200
    assert not rare.done and rare.selective
    assert not run([True] * 200).selective
