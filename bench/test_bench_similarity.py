"""Similarity-API (pgvector) at scale: ``Nearest`` p50 / p99 with and without a symbol +
as_of filter, recall@20 against exact scans, and write rates.

``HINDSIGHT_BENCH_SIMILARITY_N`` embeddings (default 1,000,000; scale down on small
machines: the HNSW build is most of the time) of 64 floats around 200 pattern centres,
1 % of them of the symbol RARE. Writes are measured three ways: upserts into the indexed
table (what a running service does), the bulk COPY load without the HNSW index followed by
one index build (a backfill), and outcomes one at a time (as ``signal.labeled`` brings them)
with the share of HOT updates. Queries go through ``SimilarityQuery.nearest`` on one pooled
connection. Prints figures; asserts no timing. Run with
`pytest -m bench bench/test_bench_similarity.py -s`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from hindsight.common.db import create_pool
from hindsight.memory.similarity import (
    EMBED_DIM,
    NearestResult,
    PatternEmbed,
    PatternOutcome,
    PatternStore,
    SimilarityQuery,
)
from hindsight.memory.storage import MIGRATIONS, Storage

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]

N = int(os.environ.get("HINDSIGHT_BENCH_SIMILARITY_N", "1000000"))
QUERIES = int(os.environ.get("HINDSIGHT_BENCH_SIMILARITY_QUERIES", "300"))
RECALL_QUERIES = 50
INDEXED_WRITES = 2000
K = 20
BASE = datetime(2020, 1, 1, tzinfo=UTC)
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "XAUUSD")
PATTERNS = ("flag", "wedge", "blow_off", "wick", "none")


def _vectors(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    v = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, EMBED_DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _rows(start: int, vectors: np.ndarray) -> list[PatternEmbed]:
    return [
        PatternEmbed(
            signal_id=f"s{i:08d}",
            symbol="RARE" if i % 100 == 0 else SYMBOLS[i % len(SYMBOLS)],
            timeframe="1h",
            ts=BASE + timedelta(minutes=5 * i),
            embed=tuple(v.tolist()),
            pattern=PATTERNS[i % len(PATTERNS)],
            quality=0.2 + 0.8 * ((i * 7919) % 1000) / 1000,
            pole_katr=1.0,
            model_version="bench",
        )
        for i, v in zip(range(start, start + len(vectors)), vectors, strict=True)
    ]


def _outcomes(start: int, stop: int) -> list[PatternOutcome]:
    return [
        PatternOutcome(
            f"s{i:08d}", ((i * 104729) % 600) / 100 - 2.0, BASE + timedelta(minutes=5 * i + 600)
        )
        for i in range(start, stop)
    ]


def _pcts(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"


async def _timed(call: Callable[[int], Awaitable[NearestResult]], n: int) -> list[float]:
    for i in range(10):
        await call(i)
    out = []
    for i in range(n):
        start = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - start)
    return out


async def test_bench_similarity(fresh_database: str) -> None:
    pool = await create_pool(fresh_database, schema="memory", migrations_dir=MIGRATIONS, max_size=2)
    try:
        holder = Storage(pool)
        store, query = PatternStore(holder, batch_size=5000), SimilarityQuery(holder)
        version = await query.check_extension()
        rng = np.random.default_rng(2026)
        centres = rng.standard_normal((200, EMBED_DIM))
        vectors = _vectors(rng, centres, N)
        print(f"\npgvector {version}, N = {N:,}, {EMBED_DIM} dims, k = {K}")

        # 1. Upserts into the indexed table (a running service's write path).
        m = min(INDEXED_WRITES, N)
        start = time.perf_counter()
        await store.upsert_many(_rows(0, vectors[:m]))
        elapsed = time.perf_counter() - start
        print(f"upsert, HNSW index present: {m / elapsed:9,.0f} rows/s ({m:,} rows)")

        # 2. Backfill: COPY without the HNSW index, then one build.
        indexdef = await pool.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'pattern_embeds_embed_hnsw'"
        )
        await pool.execute("DROP INDEX pattern_embeds_embed_hnsw")
        start = time.perf_counter()
        for lo in range(m, N, 50_000):
            await store.upsert_many(_rows(lo, vectors[lo : min(N, lo + 50_000)]))
        elapsed = time.perf_counter() - start
        print(f"upsert, no HNSW index (COPY): {(N - m) / max(elapsed, 1e-9):9,.0f} rows/s")
        start = time.perf_counter()
        for lo in range(0, N - 1000, 50_000):
            await store.record_outcomes(_outcomes(lo, min(N - 1000, lo + 50_000)))
        print(f"outcomes in batches: {(N - 1000) / (time.perf_counter() - start):9,.0f} rows/s")
        start = time.perf_counter()
        await pool.execute(
            "SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = 2; "
            f"{indexdef}"
        )
        build = time.perf_counter() - start
        await pool.execute("VACUUM ANALYZE pattern_embeds")
        print(f"HNSW build (m 16, ef_construction 200): {build:7.1f} s ({N / build:,.0f} rows/s)")

        # 3. Outcomes one at a time into the indexed table: HOT share.
        hot_before = await pool.fetchval(
            "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'pattern_embeds'"
        )
        singles = _outcomes(N - 1000, N)
        start = time.perf_counter()
        for o in singles:
            await store.record_outcome(o.signal_id, o.realised_r, o.known_at)
        elapsed = time.perf_counter() - start
        await pool.execute("SELECT pg_stat_force_next_flush()")
        hot_after = await pool.fetchval(
            "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'pattern_embeds'"
        )
        print(
            f"outcomes one at a time: {len(singles) / elapsed:9,.0f} rows/s, "
            f"HOT {hot_after - hot_before}/{len(singles)}"
        )

        # 4. Latency: unfiltered, and symbol RARE (1 %) + as_of at mid-history (0.5 % pass).
        probes = _vectors(rng, centres, max(QUERIES, RECALL_QUERIES) + 10)
        late = BASE + timedelta(minutes=5 * N + 10_000)
        mid = BASE + timedelta(minutes=5 * N // 2)
        early = BASE + timedelta(minutes=5 * N // 100)
        cases: dict[str, dict[str, object]] = {
            "unfiltered": {"as_of": late},
            "symbol RARE + as_of mid": {"as_of": mid, "symbol": "RARE"},
            "as_of early (1 % pass)": {"as_of": early},
        }
        for label, filters in cases.items():
            fallbacks = 0

            async def one(i: int, filters: dict[str, object] = filters) -> NearestResult:
                nonlocal fallbacks
                result = await query.nearest(probes[i % len(probes)].tolist(), K, **filters)  # type: ignore[arg-type]
                assert len(result.neighbours) == K
                fallbacks += result.exact
                return result

            samples = await _timed(one, QUERIES)
            hits = 0
            for probe in probes[:RECALL_QUERIES]:
                approx = await query.nearest(probe.tolist(), K, **filters)  # type: ignore[arg-type]
                exact = await query.nearest(probe.tolist(), K, exact=True, **filters)  # type: ignore[arg-type]
                hits += len(
                    {n.signal_id for n in approx.neighbours}
                    & {n.signal_id for n in exact.neighbours}
                )
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "SET LOCAL hnsw.ef_search = 64; SET LOCAL hnsw.iterative_scan = relaxed_order"
                )
                where = "outcome_known_at <= $2 AND ts <= $2" + (
                    " AND symbol = 'RARE'" if "symbol" in filters else ""
                )
                plan = await conn.fetch(
                    f"EXPLAIN SELECT signal_id FROM pattern_embeds WHERE {where} "
                    "ORDER BY embed <=> $1::real[]::vector(64) LIMIT 20",
                    probes[0].tolist(),
                    filters["as_of"],
                )
            scan = next(r[0].strip() for r in plan if "Scan" in r[0])
            print(
                f"nearest {label:23s} {_pcts(samples)}  recall@{K} "
                f"{hits / (K * RECALL_QUERIES):.3f}  exact fallbacks {fallbacks}/{QUERIES + 10}"
                f"  plan: {scan[:70]}"
            )
    finally:
        await pool.close()
