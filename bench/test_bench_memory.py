"""Memory search at 100k records: p50/p99 through the HTTP API next to a bare Chroma query.

100k random 512-d unit vectors (one physical collection, documents of random words) are
loaded straight into Chroma and the link table (loading is not what is measured), then
the running service answers vector searches with and without a filter and hybrid ones.
Prints figures and ratios; asserts no timings. Run with `make bench` (or
`pytest -m bench bench/test_bench_memory.py -s`).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hindsight.memory.app import build_memory, build_settings
from hindsight.memory.domain.records import chroma_metadata, full_metadata, physical_name
from hindsight.memory.vectors import PhysicalCollection

pytestmark = pytest.mark.bench

N = 100_000
DIM = 512
MODEL = "bench-512"
QUERIES = 300
SYMBOLS = [f"SYM{i}" for i in range(10)]
WORDS = [f"w{i}" for i in range(2000)]
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def _pcts(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3
    return p50, p99


async def _timed(call: Callable[[int], Awaitable[Any]], n: int) -> list[float]:
    for i in range(10):  # warm-up
        await call(i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - start)
    return out


def _timed_sync(call: Callable[[int], Any], n: int) -> list[float]:
    for i in range(10):
        call(i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - start)
    return out


async def test_bench_memory_search(
    nats_url: str,
    fresh_database: str,
    jetstream_reset: None,
    nats_client: NatsClient,
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((QUERIES + 10, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    async def embed_query(msg: Msg) -> None:  # the embedder's side, for hybrid text queries
        body = {"embedding": queries[hash(msg.data) % len(queries)].tolist(), "model": MODEL}
        await msg.respond(json.dumps(body).encode())

    sub = await nats_client.subscribe("embed.query", cb=embed_query)
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        data_dir=tmp_path / "data",
        http_port=0,
        admin_token="bench",
    )
    app = build_memory(settings)
    await app.start()
    try:
        name = physical_name("trade_cases", "text", MODEL)
        await app.vectors.ensure(PhysicalCollection(name, "trade_cases", "text", MODEL, DIM))
        load_start = time.perf_counter()
        batch = 5000
        for lo in range(0, N, batch):
            ids = [f"v{i:06d}" for i in range(lo, min(N, lo + batch))]
            rows, metas, docs = [], [], []
            for j, vid in enumerate(ids):
                i = lo + j
                when = BASE + timedelta(minutes=i)
                meta = full_metadata(
                    {
                        "id": vid,
                        "file_path": "",
                        "run_id": f"run{i % 50}",
                        "trade_id": f"t{i}",
                        "timestamp": when.isoformat().replace("+00:00", "Z"),
                        "type": "text",
                        "source": "bench",
                        "symbol": SYMBOLS[i % len(SYMBOLS)],
                    }
                )
                doc = " ".join(rng.choice(WORDS, 12))
                metas.append(chroma_metadata(meta, ts=when.timestamp()))
                docs.append(doc)
                rows.append(
                    {
                        "vector_id": vid,
                        "collection": "trade_cases",
                        "physical": name,
                        "modality": "text",
                        "model": MODEL,
                        "file_path": "",
                        "run_id": meta["run_id"],
                        "trade_id": meta["trade_id"],
                        "setup_id": None,
                        "timestamp": when,
                        "document": doc,
                        "metadata": meta,
                        "thumbnail_b64": None,
                        "user_label": None,
                        "quality_grade": None,
                        "archived_at": None,
                        "archived_embedding": None,
                        "created_at": when,
                        "updated_at": when,
                    }
                )
            await app.vectors.upsert(
                name,
                ids=ids,
                embeddings=vectors[lo : lo + len(ids)].tolist(),
                metadatas=metas,
                documents=docs,
            )
            await app.storage.import_records(rows)
            if lo % 20000 == 0:
                print(f"loaded {lo + len(ids)} in {time.perf_counter() - load_start:.1f} s")
        load_s = time.perf_counter() - load_start
        assert await app.vectors.count(name) == N

        print(f"loaded {N} in {time.perf_counter() - load_start:.1f} s", flush=True)
        collection = app.vectors._collection(name)
        k = 10
        bare = _timed_sync(
            lambda i: collection.query(query_embeddings=[queries[i].tolist()], n_results=k), QUERIES
        )
        bare_f = _timed_sync(
            lambda i: collection.query(
                query_embeddings=[queries[i].tolist()],
                n_results=k,
                where={"symbol": {"$eq": "SYM3"}},
            ),
            QUERIES,
        )
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{app.http.port}", timeout=30.0
        ) as client:

            async def post(body: dict[str, Any]) -> None:
                response = await client.post("/v1/search", json=body)
                assert response.status_code == 200, response.text
                assert len(response.json()["results"]) == k

            api = await _timed(
                lambda i: post({"vector": queries[i].tolist(), "model": MODEL, "k": k}), QUERIES
            )
            api_f = await _timed(
                lambda i: post(
                    {
                        "vector": queries[i].tolist(),
                        "model": MODEL,
                        "k": k,
                        "filter": {"symbol": "SYM3"},
                    }
                ),
                QUERIES,
            )
            api_h = await _timed(
                lambda i: post({"text": f"{WORDS[i]} {WORDS[i + 7]}", "k": k, "hybrid": True}),
                QUERIES,
            )
        figures = {
            "bare chroma, no filter": _pcts(bare),
            "bare chroma, filter": _pcts(bare_f),
            "API vector, no filter": _pcts(api),
            "API vector, filter": _pcts(api_f),
            "API hybrid (text via embed.query + full-text + RRF)": _pcts(api_h),
        }
        print(f"\nmemory search at {N} records x {DIM}-d (load {load_s:.1f} s), k={k}:")
        for label, (p50, p99) in figures.items():
            print(f"  {label:<55} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
        b50 = figures["bare chroma, no filter"][0]
        f50 = figures["bare chroma, filter"][0]
        print(
            f"  ratios (p50): API/bare {figures['API vector, no filter'][0] / b50:.2f}x, "
            f"API filter/bare filter {figures['API vector, filter'][0] / f50:.2f}x"
        )
    finally:
        await sub.unsubscribe()
        await app.stop()
