"""Batched ingest against real PostgreSQL: one upsert per fetched batch, same results as
one event at a time (idempotent, newest wins, pending outcomes derived)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from hindsight.common.db import create_pool
from hindsight.common.errors import InvalidInputError
from hindsight.common.events import SignalFeatures, SignalOutcome
from hindsight.devstack.synthetic import generate
from hindsight.trainer.app import build_settings
from hindsight.trainer.ingest import Ingestor
from hindsight.trainer.metrics import ROWS_INGESTED
from hindsight.trainer.storage import MIGRATIONS, Storage

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def storage(fresh_database: str) -> AsyncIterator[Storage]:
    pool = await create_pool(fresh_database, schema="trainer", migrations_dir=MIGRATIONS)
    try:
        yield Storage(pool)
    finally:
        await pool.close()


def _ingestor(storage: Storage, tmp_path: Path, seen: list[str]) -> Ingestor:
    settings = build_settings(database_url="", artifact_root=tmp_path, registry_url="")
    return Ingestor(storage, settings, observe=lambda e: seen.append(e.signal_id))


def _written(subject: str, written: str) -> float:
    return ROWS_INGESTED.labels(subject, written)._value.get()


async def test_a_batch_with_repeats_writes_each_signal_once_newest_first(
    storage: Storage, tmp_path: Path
) -> None:
    seen: list[str] = []
    ingestor = _ingestor(storage, tmp_path, seen)
    pairs = generate(50, seed=1)
    signals = [s for s, _ in pairs]
    newer = signals[0].model_copy(
        update={"occurred_at": signals[0].occurred_at + timedelta(seconds=1), "symbol": "NEW"}
    )
    before = _written(SignalFeatures.subject, "true"), _written(SignalFeatures.subject, "false")
    # A repeat, a newer copy and an older copy inside one batch: one row per signal_id.
    await ingestor.on_signals([*signals, signals[3], newer, signals[0]])
    rows = await storage.pool.fetch("SELECT signal_id, symbol FROM signals")
    assert len(rows) == 50
    assert {r["symbol"] for r in rows if r["signal_id"] == newer.signal_id} == {"NEW"}
    assert sorted(seen) == sorted(s.signal_id for s in signals)  # drift sees each new row once
    after = _written(SignalFeatures.subject, "true"), _written(SignalFeatures.subject, "false")
    assert (after[0] - before[0], after[1] - before[1]) == (50, 3)

    # The whole batch redelivered: nothing written, nothing observed again.
    await ingestor.on_signals(signals)
    assert await storage.pool.fetchval("SELECT count(*) FROM signals") == 50
    assert len(seen) == 50
    assert _written(SignalFeatures.subject, "false") - after[1] == 50


async def test_outcomes_before_their_signals_are_derived_when_the_signals_arrive(
    storage: Storage, tmp_path: Path
) -> None:
    ingestor = _ingestor(storage, tmp_path, [])
    pairs = generate(200, seed=2, derive_share=0.5)
    await ingestor.on_outcomes([o for _, o in pairs])
    stats = await storage.stats()
    derivable = sum(o.result is None for _, o in pairs)
    assert stats.outcomes == 200 and stats.pending_outcomes == derivable > 0
    await ingestor.on_signals([s for s, _ in pairs])
    stats = await storage.stats()
    assert stats.pending_outcomes == 0 and stats.derived_outcomes == derivable
    # A result given later fills in a pending one; the same outcomes again change nothing.
    await ingestor.on_outcomes([o for _, o in pairs])
    assert (await storage.stats()).signals_with_outcome == 200


async def test_an_underivable_outcome_fails_its_batch_before_anything_is_written(
    storage: Storage, tmp_path: Path
) -> None:
    """The batch consumer then retries one by one: only the bad one goes to the DLQ."""
    ingestor = _ingestor(storage, tmp_path, [])
    pairs = generate(20, seed=3)
    good = [o for _, o in pairs]
    bad = SignalOutcome.create(source="test", signal_id="nope", closed_at=good[0].closed_at)
    with pytest.raises(InvalidInputError) as caught:
        await ingestor.on_outcomes([*good[:10], bad, *good[10:]])
    assert caught.value.field == "exit_price"
    assert await storage.pool.fetchval("SELECT count(*) FROM outcomes") == 0
    await ingestor.on_outcomes(good)
    assert await storage.pool.fetchval("SELECT count(*) FROM outcomes") == 20


async def test_a_hold_signal_leaves_its_outcome_pending(storage: Storage, tmp_path: Path) -> None:
    """A signal that cannot derive its outcome's result is stored; the outcome stays pending."""
    ingestor = _ingestor(storage, tmp_path, [])
    signal, outcome = generate(1, seed=4, derive_share=1.0)[0]
    await ingestor.on_outcomes([outcome])
    hold: SignalFeatures = signal.model_copy(update={"side": "hold"})
    await ingestor.on_signals([hold])
    stats = await storage.stats()
    assert (stats.signals, stats.pending_outcomes) == (1, 1)
