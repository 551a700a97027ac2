"""Batched ``embedding.created`` ingest against real PostgreSQL and embedded Chroma: one
Chroma upsert per collection and one link-table upsert per batch, same results as one
event at a time."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from hindsight.common.db import create_pool
from hindsight.common.errors import InvalidInputError
from hindsight.common.events import EmbeddingCreated, format_utc
from hindsight.memory.app import build_settings
from hindsight.memory.chroma_store import VectorStore
from hindsight.memory.domain.records import physical_name
from hindsight.memory.ingest import Ingestor
from hindsight.memory.storage import MIGRATIONS, Storage

pytestmark = pytest.mark.integration

BASE = datetime(2024, 3, 1, tzinfo=UTC)
CLIP, MINILM = "clip-test", "minilm-test"
DIMS = {CLIP: 16, MINILM: 8}


def _unit(seed: str, dim: int) -> list[float]:
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16))
    v = rng.standard_normal(dim)
    return [float(x) for x in v / np.linalg.norm(v)]


def _event(
    vid: str, *, model: str = CLIP, trade_id: str | None = None, seed: str = ""
) -> EmbeddingCreated:
    return EmbeddingCreated.create(
        source="test",
        vector_id=vid,
        collection="trade_cases",
        modality="image",
        model=model,
        embedding=_unit(vid + seed, DIMS[model]),
        metadata={
            "id": vid,
            "file_path": f"/charts/{vid}.png",
            "run_id": "r1",
            "trade_id": trade_id,
            "setup_id": None,
            "rule_version": "rules-1",
            "timestamp": format_utc(BASE + timedelta(minutes=len(vid))),
            "type": "image",
            "source": "test",
        },
    )


@pytest_asyncio.fixture
async def ingestor(fresh_database: str, tmp_path: Path) -> AsyncIterator[Ingestor]:
    pool = await create_pool(fresh_database, schema="memory", migrations_dir=MIGRATIONS)
    vectors = VectorStore(build_settings(database_url="", data_dir=tmp_path / "data"))
    await vectors.start()
    try:
        yield Ingestor(Storage(pool), vectors)
    finally:
        await vectors.stop()
        await pool.close()


async def test_a_batch_with_repeats_and_a_re_embed_leaves_one_record_each(
    ingestor: Ingestor,
) -> None:
    storage, vectors = ingestor.storage, ingestor.vectors
    await storage.save_label(
        trade_id="t1", labeler_id="ann", label="approved", quality_grade="A", occurred_at=BASE
    )
    await ingestor.on_embeddings([_event("a"), _event("b", trade_id="t1")])
    clip = physical_name("trade_cases", "image", CLIP)
    first = await storage.get("a")
    assert first is not None
    # One batch: a repeat of "b", "a" re-embedded with another model, a new "c" twice
    # (the last copy wins).
    await ingestor.on_embeddings(
        [
            _event("b", trade_id="t1"),
            _event("a", model=MINILM),
            _event("c", seed="old"),
            _event("b", trade_id="t1"),
            _event("c", seed="new"),
        ]
    )
    rows = await storage.get_many(["a", "b", "c"])
    assert sorted(rows) == ["a", "b", "c"]
    minilm = physical_name("trade_cases", "image", MINILM)
    assert rows["a"].physical == minilm and rows["a"].created_at == first.created_at
    assert rows["b"].metadata["user_label"] == "approved" and rows["b"].quality_grade == "A"
    assert await vectors.count(clip) == 2 and await vectors.count(minilm) == 1  # "a" moved
    page = await vectors.get(clip, ids=["c"])
    assert np.allclose(page.embeddings[0], _unit("cnew", DIMS[CLIP]), atol=1e-6)


async def test_bad_input_in_a_batch_raises_before_its_vectors_are_written(
    ingestor: Ingestor,
) -> None:
    """The batch consumer then handles the events one by one: only the bad one is lost."""
    await ingestor.on_embeddings([_event("a")])
    wrong = _event("x").model_copy(update={"embedding": _unit("x", DIMS[CLIP] + 1)})
    with pytest.raises(InvalidInputError) as caught:
        await ingestor.on_embeddings([_event("b"), wrong, _event("c")])
    assert caught.value.field == "embedding"
    assert sorted(await ingestor.storage.get_many(["a", "b", "c", "x"])) == ["a"]
    assert await ingestor.vectors.count(physical_name("trade_cases", "image", CLIP)) == 1


async def test_a_batch_redelivered_after_a_crash_between_chroma_and_postgres(
    ingestor: Ingestor,
) -> None:
    """Killed after the Chroma upsert, before the link table: the redelivered batch
    neither loses nor duplicates a record."""
    events = [_event(f"v{i:03d}") for i in range(200)]
    clip = physical_name("trade_cases", "image", CLIP)
    await ingestor.on_embeddings(events[:50])
    # What the crashed attempt got done: Chroma only, for the whole batch.
    await ingestor.vectors.upsert(
        clip,
        ids=[e.vector_id for e in events],
        embeddings=[e.embedding for e in events],
        metadatas=[None] * len(events),
        documents=[None] * len(events),
    )
    await ingestor.on_embeddings(events)
    assert await ingestor.vectors.count(clip) == 200
    assert len(await ingestor.storage.get_many([e.vector_id for e in events])) == 200
    meta = await ingestor.vectors.metadatas(clip, ["v120"])
    assert meta["v120"]["run_id"] == "r1"  # the redelivery wrote the full metadata
