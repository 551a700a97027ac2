"""Memory ingest: ``embedding.created`` records/s through real NATS JetStream, PostgreSQL
and embedded Chroma, next to a bare batched Chroma upsert of the same vectors.

N events (random unit vectors, the mandatory metadata) are published first; then the
memory service starts and the drain is timed until every record is in the link table.
The baseline upserts the same ids, vectors, metadata and documents straight into a Chroma
collection of its own (another directory), in batches of the consumer's size: no NATS, no
parsing, no PostgreSQL. Prints figures and the ratio; asserts no timing.
``HINDSIGHT_BENCH_MEMORY_RECORDS`` sets N (default 20,000), ``HINDSIGHT_BENCH_MEMORY_DIM``
the dimension (384), ``HINDSIGHT_BENCH_MEMORY_BATCH`` the consumer batch size (the
setting's default). Run with ``make bench`` or
``pytest -m bench bench/test_bench_ingest_memory.py -s``.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import chromadb
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import create_broker, ensure_streams
from hindsight.common.events import EmbeddingCreated, format_utc
from hindsight.memory.app import build_memory, build_settings
from hindsight.memory.domain.records import chroma_metadata, full_metadata, physical_name

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

N = int(os.environ.get("HINDSIGHT_BENCH_MEMORY_RECORDS", "20000"))
DIM = int(os.environ.get("HINDSIGHT_BENCH_MEMORY_DIM", "384"))
MODEL = "bench-minilm"
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def _events(n: int) -> list[EmbeddingCreated]:
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        EmbeddingCreated.create(
            source="bench",
            vector_id=f"v{i:07d}",
            collection="trade_cases",
            modality="text",
            model=MODEL,
            embedding=vectors[i].tolist(),
            metadata={
                "id": f"v{i:07d}",
                "file_path": "",
                "run_id": f"run{i % 50}",
                "trade_id": f"t{i}",
                "setup_id": None,
                "rule_version": "rules-1",
                "timestamp": format_utc(BASE + timedelta(minutes=i)),
                "type": "text",
                "source": "bench",
                "symbol": f"SYM{i % 10}",
            },
            document=f"trade {i} setup note",
        )
        for i in range(n)
    ]


def _bare_chroma(path: Path, events: list[EmbeddingCreated], batch: int) -> float:
    """Seconds to upsert the events' vectors straight into Chroma, ``batch`` at a time."""
    client = chromadb.PersistentClient(path=str(path))
    collection = client.get_or_create_collection(
        "bare", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    start = time.perf_counter()
    for lo in range(0, len(events), batch):
        chunk = events[lo : lo + batch]
        metas = []
        for e in chunk:
            ts = datetime.fromisoformat(str(e.metadata["timestamp"])).timestamp()
            metas.append(chroma_metadata(full_metadata(dict(e.metadata)), ts=ts))
        collection.upsert(
            ids=[e.vector_id for e in chunk],
            embeddings=[e.embedding for e in chunk],
            metadatas=metas,  # type: ignore[arg-type]
            documents=[e.document or "" for e in chunk],
        )
    return time.perf_counter() - start


async def _publish(nats_client: NatsClient, events: list[EmbeddingCreated]) -> None:
    js = nats_client.jetstream()

    async def one(event: EmbeddingCreated) -> None:
        await js.publish(
            event.subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.message_id()}
        )

    for lo in range(0, len(events), 256):
        await asyncio.gather(*(one(e) for e in events[lo : lo + 256]))


async def test_bench_memory_ingest_vs_bare_chroma(
    nats_url: str,
    fresh_database: str,
    jetstream_reset: None,
    nats_client: NatsClient,
    tmp_path: Path,
) -> None:
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        data_dir=tmp_path / "data",
        http_port=0,
        admin_token="bench",
    )
    batch = int(os.environ.get("HINDSIGHT_BENCH_MEMORY_BATCH", settings.consumer_batch_size))
    settings.consumer_batch_size = batch
    events = _events(N)

    bare_s = await asyncio.to_thread(_bare_chroma, tmp_path / "bare", events, batch)

    broker = create_broker(settings, client_name="bench")
    await broker.connect()
    await ensure_streams(broker, settings)
    await broker.stop()
    start = time.perf_counter()
    await _publish(nats_client, events)
    publish_s = time.perf_counter() - start

    app = build_memory(settings)
    cpu = time.process_time()
    start = time.perf_counter()
    await app.start()
    try:
        pool = app.storage.pool
        assert pool is not None
        while await pool.fetchval("SELECT count(*) FROM records") < N:
            await asyncio.sleep(0.1)
        drain_s = time.perf_counter() - start
        cpu_s = time.process_time() - cpu
        name = physical_name("trade_cases", "text", MODEL)
        assert await app.vectors.count(name) == N
    finally:
        await app.stop()

    rate, bare_rate = N / drain_s, N / bare_s
    print(f"\nmemory ingest, {N:,} records x {DIM}-d, consumer batch {batch}:")
    print(f"  published to JetStream in {publish_s:.1f} s ({N / publish_s:,.0f} events/s)")
    print(
        f"  memory drain (NATS -> Chroma + PostgreSQL, start-up included): {drain_s:.1f} s = "
        f"{rate:,.0f} records/s; CPU of this process meanwhile {cpu_s:.1f} s "
        "(Chroma's own threads included)"
    )
    print(f"  bare batched Chroma upsert of the same vectors: {bare_s:.1f} s = {bare_rate:,.0f}/s")
    print(
        f"  ratio memory / bare Chroma: {rate / bare_rate:.2f} "
        f"(bare is {bare_rate / rate:.1f}x faster); aim >= 5,000 records/s"
    )
