"""Memory search at 100k records: p50/p99 through the HTTP API next to a bare Chroma query.

100k random 512-d unit vectors (one physical collection, documents of random words) are
loaded straight into Chroma and the link table (loading is not what is measured), then
the running service answers vector searches with and without a filter and hybrid ones.
Each filtered case runs twice: with Chroma's filtered query only (over-fetch off, the
path before issue 5) and with the over-fetch; the share of fallbacks is printed too.
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
from hindsight.memory.chroma_store import PhysicalCollection
from hindsight.memory.domain.records import chroma_metadata, full_metadata, physical_name
from hindsight.memory.storage import StoredRecord

# Loading 100k vectors alone takes minutes on 2 busy cores: above the suite's 300 s.
pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

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


async def _timed(
    call: Callable[[int], Awaitable[Any]], n: int, *, first: int = 0, warm: int = 10
) -> list[float]:
    for i in range(warm):  # warm-up
        await call(i)
    out = []
    for i in range(first, first + n):
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
                    StoredRecord(
                        vector_id=vid,
                        collection="trade_cases",
                        physical=name,
                        modality="text",
                        model=MODEL,
                        file_path="",
                        run_id=f"run{i % 50}",
                        trade_id=f"t{i}",
                        setup_id=None,
                        timestamp=when,
                        document=doc,
                        metadata=meta,
                        thumbnail_b64=None,
                        user_label=None,
                        quality_grade=None,
                        archived_at=None,
                        archived_embedding=None,
                        created_at=when,
                        updated_at=when,
                    )
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

            async def paths() -> dict[str, float]:
                out = {}
                for line in (await client.get("/metrics")).text.splitlines():
                    if line.startswith("hindsight_memory_search_path_total{"):
                        label, value = line.split("} ")
                        out[label.split('"')[1]] = float(value)
                return out

            as_of = (BASE + timedelta(minutes=int(N * 0.9))).isoformat()
            filters: dict[str, dict[str, Any]] = {
                # one symbol in ten: what LLM tools ask
                "common (symbol, 10%)": {"filter": {"symbol": "SYM3"}},
                # what every backtest query carries: no look-ahead past as_of
                "as_of (90%)": {"as_of": as_of},
                # one run and its symbol: 2% of the records, rarely k in the candidates
                "selective (run_id+symbol, 2%)": {"filter": {"run_id": "run7", "symbol": "SYM7"}},
            }
            overfetch = settings.search_overfetch
            filtered: dict[str, list[float]] = {}
            fallback_share: dict[str, float] = {}
            blocks = 20  # before and after alternate in blocks: both see the same load
            for label, extra in filters.items():

                async def one(i: int, extra: dict[str, Any] = extra) -> None:
                    body = {"vector": queries[i].tolist(), "model": MODEL, "k": k}
                    await post({**body, **extra})

                runs = {
                    f"API vector, {label}, Chroma filter (before)": (0, QUERIES // 3 // blocks),
                    f"API vector, {label}, overfetch {overfetch}": (overfetch, QUERIES // blocks),
                }
                served: dict[str, dict[str, float]] = {key: {} for key in runs}
                for key, (factor, _) in runs.items():
                    filtered[key] = []
                    app.settings.search_overfetch = factor
                    await _timed(one, 0)  # warm-up
                for block in range(blocks):
                    for key, (factor, n) in runs.items():
                        app.settings.search_overfetch = factor
                        before = await paths()
                        filtered[key] += await _timed(one, n, first=block * n, warm=0)
                        after = await paths()
                        for p in after:
                            served[key][p] = served[key].get(p, 0) + after[p] - before.get(p, 0)
                for key in runs:
                    fallback_share[key] = served[key]["chroma_filter"] / max(
                        1.0, served[key]["chroma_filter"] + served[key]["overfetch"]
                    )
            app.settings.search_overfetch = overfetch
            api_h = await _timed(
                lambda i: post({"text": f"{WORDS[i]} {WORDS[i + 7]}", "k": k, "hybrid": True}),
                QUERIES,
            )
            api_hf = await _timed(
                lambda i: post(
                    {
                        "text": f"{WORDS[i]} {WORDS[i + 7]}",
                        "k": k,
                        "hybrid": True,
                        "filter": {"symbol": "SYM3"},
                    }
                ),
                QUERIES,
            )
        figures = {
            "bare chroma, no filter": _pcts(bare),
            "bare chroma, filter": _pcts(bare_f),
            "API vector, no filter": _pcts(api),
            **{label: _pcts(samples) for label, samples in filtered.items()},
            "API hybrid (text via embed.query + full-text + RRF)": _pcts(api_h),
            "API hybrid, common filter (symbol, 10%)": _pcts(api_hf),
        }
        print(f"\nmemory search at {N} records x {DIM}-d (load {load_s:.1f} s), k={k}:")
        for label, (p50, p99) in figures.items():
            share = fallback_share.get(label)
            tail = "" if share is None else f"   fallback {share:6.1%}"
            print(f"  {label:<72} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms{tail}")
        b50 = figures["bare chroma, no filter"][0]
        f50 = figures["bare chroma, filter"][0]
        common = figures[f"API vector, common (symbol, 10%), overfetch {overfetch}"][0]
        common_before = figures["API vector, common (symbol, 10%), Chroma filter (before)"][0]
        print(
            f"  ratios (p50): API/bare {figures['API vector, no filter'][0] / b50:.2f}x, "
            f"API common filter/bare filter {common / f50:.2f}x, "
            f"common filter before/after {common_before / common:.1f}x"
        )
    finally:
        await sub.unsubscribe()
        await app.stop()
