"""signal.labeled against real PostgreSQL: one row per (signal_id, label_spec), the highest
revision kept, redeliveries and older copies write nothing; the family join and the newest
label spec."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

from hindsight.common.db import create_pool
from hindsight.common.events import SignalLabeled
from hindsight.devstack.synthetic import generate
from hindsight.trainer.domain.family_spec import FamilySpec
from hindsight.trainer.family_storage import FamilyStorage
from hindsight.trainer.labels_ingest import LabelsIngestor
from hindsight.trainer.metrics import ROWS_INGESTED
from hindsight.trainer.storage import MIGRATIONS, Storage

pytestmark = pytest.mark.integration

OLD_SPEC = "00000000000000aa"
NEW_SPEC = "00000000000000bb"


@pytest_asyncio.fixture
async def storage(fresh_database: str) -> AsyncIterator[FamilyStorage]:
    pool = await create_pool(fresh_database, schema="trainer", migrations_dir=MIGRATIONS)
    try:
        yield FamilyStorage(Storage(pool))
    finally:
        await pool.close()


def _label(signal_id: str, spec: str = OLD_SPEC, **fields: Any) -> SignalLabeled:
    values: dict[str, Any] = {
        "signal_id": signal_id,
        "label_spec": spec,
        "horizon_bars": 12,
        "runup_r": 1.8,
        "drawdown_r": -0.6,
        "realised_r": 1.0,
        "y_entry": 1,
        "dd_katr": 0.9,
        "best_offset_katr": -0.1,
        "liquidity_cluster": "M",
    } | fields
    return SignalLabeled.create(source="market", **values)


def _written(value: str) -> float:
    counted: float = ROWS_INGESTED.labels(SignalLabeled.subject, value)._value.get()
    return counted


async def _rows(storage: FamilyStorage) -> dict[tuple[str, str], Any]:
    records = await storage.pool.fetch(
        "SELECT signal_id, label_spec, revision, runup_r, y_entry FROM signal_labels"
    )
    return {(r["signal_id"], r["label_spec"]): r for r in records}


async def test_labels_are_idempotent_and_the_highest_revision_wins(
    storage: FamilyStorage,
) -> None:
    ingestor = LabelsIngestor(storage)
    first = [_label(f"s{i}") for i in range(20)]
    before = _written("true"), _written("false")
    # A repeat and an older copy inside one batch: one row per key.
    older = first[1].model_copy(
        update={"occurred_at": first[1].occurred_at - timedelta(seconds=5), "runup_r": 9.0}
    )
    await ingestor.on_labels([*first, first[0], older])
    rows = await _rows(storage)
    assert len(rows) == 20 and rows[("s1", OLD_SPEC)]["runup_r"] == 1.8
    assert (_written("true") - before[0], _written("false") - before[1]) == (20, 2)

    # The whole batch redelivered: nothing written.
    await ingestor.on_labels(first)
    assert _written("false") - before[1] == 22
    assert await storage.pool.fetchval("SELECT count(*) FROM signal_labels") == 20

    # A relabel after a bar correction: revision 1 replaces revision 0 even when its
    # occurred_at is older (clocks differ); then a late revision-0 copy changes nothing.
    relabel = _label(
        "s2",
        label_revision=1,
        runup_r=0.4,
        y_entry=0,
        occurred_at=first[2].occurred_at - timedelta(minutes=1),
    )
    await ingestor.on_labels([relabel])
    await ingestor.on_labels([first[2].model_copy(update={"runup_r": 7.0})])
    row = (await _rows(storage))[("s2", OLD_SPEC)]
    assert (row["revision"], row["runup_r"], row["y_entry"]) == (1, 0.4, 0)
    # Two revisions in one batch: the higher one, whatever the order.
    second = _label("s3", label_revision=2, runup_r=3.3)
    await ingestor.on_labels([second, _label("s3", label_revision=1, runup_r=1.1)])
    assert (await _rows(storage))[("s3", OLD_SPEC)]["runup_r"] == 3.3

    # Same key under another spec is another row.
    await ingestor.on_labels([_label("s0", NEW_SPEC)])
    assert len(await _rows(storage)) == 21


async def test_family_rows_join_the_spec_signals_with_one_label_spec_newest_first(
    storage: FamilyStorage,
) -> None:
    pairs = generate(30, seed=5, n_features=4) + generate(
        10, seed=6, n_features=4, feature_schema_version=2
    )
    signals = [s for s, _ in pairs]
    await storage.storage.upsert_signals(signals)
    ingestor = LabelsIngestor(storage)
    # Old spec for every signal, then a newer spec for the first 12 and one label whose
    # signal never arrived.
    await ingestor.on_labels([_label(s.signal_id, OLD_SPEC) for s in signals])
    await ingestor.on_labels(
        [_label(s.signal_id, NEW_SPEC, y_entry=0) for s in signals[:12]]
        + [_label("unknown", NEW_SPEC)]
    )
    family = FamilySpec(family="playbook", feature_schema_version=1)
    stats = await storage.label_stats(family)
    assert [(s.label_spec, s.labels) for s in stats] == [(NEW_SPEC, 12), (OLD_SPEC, 30)]

    rows = await storage.family_rows(family, NEW_SPEC)
    assert [r.signal_id for r in rows] == [s.signal_id for s in signals[:12]]
    assert all(r.label_spec == NEW_SPEC and r.y_entry == 0 for r in rows)
    assert [r.ts for r in rows] == sorted(r.ts for r in rows)
    first = signals[0]
    assert rows[0].features == first.features and rows[0].symbol == first.symbol
    assert rows[0].liquidity_cluster == "M" and rows[0].horizon_bars == 12
    assert rows[0].dd_katr == 0.9 and rows[0].best_offset_katr == -0.1

    v2 = FamilySpec(family="v2", feature_schema_version=2, symbols=[signals[30].symbol])
    only = await storage.family_rows(v2, OLD_SPEC)
    assert {r.signal_id for r in only} == {
        s.signal_id for s in signals[30:] if s.symbol == signals[30].symbol
    }
    assert [s.label_spec for s in await storage.label_stats(v2)] == [OLD_SPEC]
