"""Similarity-API storage against a real PostgreSQL 18 with pgvector.

One module-wide database holds 20,000 clustered embeddings (1 % of them of the symbol RARE,
a tenth with no outcome yet): point in time (hypothesis), full k under selective filters,
recall@20 of the HNSW answer against exact scans. Small fresh databases check upserts,
outcomes and the scores by hand; a PostgreSQL without pgvector fails with a clear error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hindsight.common.db import create_pool
from hindsight.common.errors import ConfigurationError, InvalidInputError, NotFoundError
from hindsight.devstack.ports import free_port
from hindsight.devstack.pytest_plugin import with_database
from hindsight.devstack.servers import PostgresServer, start_server
from hindsight.memory.app import build_memory, build_settings
from hindsight.memory.similarity import (
    EMBED_DIM,
    PatternEmbed,
    PatternOutcome,
    PatternStore,
    SimilarityQuery,
)
from hindsight.memory.similarity.extension import PGVECTOR_MIN, require_pgvector, version_tuple
from hindsight.memory.storage import MIGRATIONS, Storage

pytestmark = pytest.mark.integration

BASE = datetime(2024, 1, 1, tzinfo=UTC)
N_SEEDED = 20_000
SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY")
PATTERNS = ("flag", "wedge", "blow_off", "wick", "none")


def _unit_rows(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    """``n`` unit vectors around random ``centres`` (embeddings cluster by pattern)."""
    picks = rng.integers(0, len(centres), n)
    v = centres[picks] + 0.35 * rng.standard_normal((n, EMBED_DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Seeded:
    store: PatternStore
    query: SimilarityQuery
    pool: asyncpg.Pool
    vectors: np.ndarray
    centres: np.ndarray


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest_asyncio.fixture(scope="module")
async def seeded(database_url: str) -> AsyncIterator[Seeded]:
    name = f"test_similarity_{uuid.uuid4().hex[:12]}"
    await _admin(database_url, f'CREATE DATABASE "{name}"')
    pool = await create_pool(
        with_database(database_url, name), schema="memory", migrations_dir=MIGRATIONS
    )
    try:
        rng = np.random.default_rng(17)
        centres = rng.standard_normal((40, EMBED_DIM))
        vectors = _unit_rows(rng, N_SEEDED, centres)
        rows = [
            PatternEmbed(
                signal_id=f"s{i:05d}",
                symbol="RARE" if i % 100 == 0 else SYMBOLS[i % 3],
                timeframe="4h" if i % 7 == 0 else "1h",
                ts=BASE + timedelta(minutes=30 * i),
                embed=tuple(vectors[i].tolist()),
                pattern=PATTERNS[i % 5],
                quality=float(rng.uniform(0.2, 1.0)),
                pole_katr=float(rng.uniform(0.5, 3.0)),
                model_version="pattern-cnn-1",
            )
            for i in range(N_SEEDED)
        ]
        outcomes = [
            PatternOutcome(
                f"s{i:05d}",
                float(rng.normal(0.2, 1.2)),
                BASE + timedelta(minutes=30 * i + int(rng.integers(60, 48 * 60))),
            )
            for i in range(N_SEEDED)
            if i % 10 != 3  # a tenth of the windows have no outcome yet
        ]
        store = PatternStore(Storage(pool))
        # Loading is not under test: write without the HNSW index, then build it exactly as
        # the migration defined it (a build is several times faster than 20k inserts).
        indexdef = await pool.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'pattern_embeds_embed_hnsw'"
        )
        await pool.execute("DROP INDEX pattern_embeds_embed_hnsw")
        await store.upsert_many(rows)
        await store.record_outcomes(outcomes)
        await pool.execute(
            f"SET maintenance_work_mem = '256MB'; {indexdef}; ANALYZE pattern_embeds"
        )
        yield Seeded(store, SimilarityQuery(Storage(pool)), pool, vectors, centres)
    finally:
        await pool.close()
        await _admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture
async def small(fresh_database: str) -> AsyncIterator[tuple[PatternStore, SimilarityQuery]]:
    pool = await create_pool(fresh_database, schema="memory", migrations_dir=MIGRATIONS)
    try:
        yield PatternStore(Storage(pool), batch_size=2), SimilarityQuery(Storage(pool))
    finally:
        await pool.close()


def _qualifying_sql(symbol: str | None, pattern: str | None) -> str:
    where = ["outcome_known_at <= $1", "ts <= $1"]
    if symbol is not None:
        where.append(f"symbol = '{symbol}'")
    if pattern is not None:
        where.append(f"pattern = '{pattern}'")
    return f"SELECT count(*) FROM pattern_embeds WHERE {' AND '.join(where)}"


# --- point in time, full k, recall (the 20k database) --------------------------------------


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    minutes=st.integers(-600, 30 * N_SEEDED + 3000),
    k=st.integers(1, 60),
    symbol=st.sampled_from([None, "RARE", *SYMBOLS]),
    pattern=st.sampled_from([None, *PATTERNS]),
    seed=st.integers(0, 2**32 - 1),
)
async def test_nearest_never_returns_a_neighbour_from_after_as_of(
    seeded: Seeded, minutes: int, k: int, symbol: str | None, pattern: str | None, seed: int
) -> None:
    as_of = BASE + timedelta(minutes=minutes)
    probe = _unit_rows(np.random.default_rng(seed), 1, seeded.centres)[0]
    result = await seeded.query.nearest(
        probe.tolist(), k, as_of=as_of, symbol=symbol, pattern=pattern
    )
    for n in result.neighbours:
        assert n.ts <= as_of
        assert n.outcome_known_at is not None and n.outcome_known_at <= as_of
        assert symbol is None or n.symbol == symbol
        assert pattern is None or n.pattern == pattern
    similarities = [n.similarity for n in result.neighbours]
    assert similarities == sorted(similarities, reverse=True)
    qualifying = await seeded.pool.fetchval(_qualifying_sql(symbol, pattern), as_of)
    assert len(result.neighbours) == min(k, qualifying)


async def test_a_filter_that_keeps_one_percent_still_returns_k_rows(seeded: Seeded) -> None:
    as_of = BASE + timedelta(minutes=30 * N_SEEDED // 2)  # about 90 RARE windows qualify
    qualifying = await seeded.pool.fetchval(_qualifying_sql("RARE", None), as_of)
    assert qualifying >= 50
    rng = np.random.default_rng(5)
    for probe in _unit_rows(rng, 20, seeded.centres):
        for k in (10, 20, 50):
            result = await seeded.query.nearest(probe.tolist(), k, as_of=as_of, symbol="RARE")
            assert len(result.neighbours) == k
            assert {n.symbol for n in result.neighbours} == {"RARE"}
    everything = await seeded.query.nearest(
        rng.standard_normal(EMBED_DIM).tolist(), 1000, as_of=as_of, symbol="RARE"
    )
    assert len(everything.neighbours) == qualifying


async def test_the_hnsw_scan_needs_the_iterative_scan_under_a_selective_filter(
    seeded: Seeded,
) -> None:
    # A filter no btree serves (quality, ~1 % of rows) leaves the HNSW index with the filter
    # applied to its output; other scans are barred so the planner takes it.
    probe = _unit_rows(np.random.default_rng(23), 1, seeded.centres)[0].tolist()
    as_of = BASE + timedelta(minutes=30 * N_SEEDED)
    sql = """SELECT signal_id FROM pattern_embeds
             WHERE quality > 0.99 AND outcome_known_at <= $2 AND ts <= $2
             ORDER BY embed <=> $1::real[]::vector(64) LIMIT 20"""
    counts = {}
    async with seeded.pool.acquire() as conn:
        for mode in ("off", "relaxed_order"):
            async with conn.transaction():
                await conn.execute(
                    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
                    "SET LOCAL enable_indexscan = on; SET LOCAL hnsw.ef_search = 64; "
                    f"SET LOCAL hnsw.iterative_scan = {mode}"
                )
                plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", probe, as_of))
                if "pattern_embeds_embed_hnsw" not in plan:
                    pytest.fail(f"the planner did not take the HNSW index:\n{plan}")
                counts[mode] = len(await conn.fetch(sql, probe, as_of))
    assert counts["off"] < 20  # 64 candidates, ~1 % of them pass
    assert counts["relaxed_order"] == 20


async def test_recall_at_20_against_exact_scans(seeded: Seeded) -> None:
    as_of = BASE + timedelta(minutes=30 * N_SEEDED + 5000)
    known = seeded.vectors[[i for i in range(N_SEEDED) if i % 10 != 3]]
    rng = np.random.default_rng(11)
    hits = total = 0
    for probe in _unit_rows(rng, 30, seeded.centres):
        approx = await seeded.query.nearest(probe.tolist(), 20, as_of=as_of)
        exact = await seeded.query.nearest(probe.tolist(), 20, as_of=as_of, exact=True)
        assert not approx.exact and exact.exact
        hits += len(
            {n.signal_id for n in approx.neighbours} & {n.signal_id for n in exact.neighbours}
        )
        total += 20
        # The exact scan is the reference: its similarities are numpy's.
        cosines = known @ probe  # unit vectors
        np.testing.assert_allclose(
            [n.similarity for n in exact.neighbours], np.sort(cosines)[::-1][:20], atol=1e-5
        )
    assert hits / total >= 0.95


async def test_a_stored_window_can_be_the_query(seeded: Seeded) -> None:
    row = await seeded.pool.fetchrow(
        "SELECT signal_id, symbol, timeframe, ts FROM pattern_embeds WHERE signal_id = 's12345'"
    )
    assert row is not None
    as_of = row["ts"] + timedelta(days=30)
    result = await seeded.query.nearest(
        None, 5, as_of=as_of, symbol=row["symbol"], timeframe=row["timeframe"], end=row["ts"]
    )
    by_vector = await seeded.query.nearest(
        seeded.vectors[12345].tolist(),
        6,
        as_of=as_of,
        symbol=row["symbol"],
        timeframe=row["timeframe"],
    )
    assert "s12345" not in {n.signal_id for n in result.neighbours}
    assert [n.signal_id for n in result.neighbours] == [
        n.signal_id for n in by_vector.neighbours if n.signal_id != "s12345"
    ][:5]
    with pytest.raises(NotFoundError):
        await seeded.query.nearest(
            None, 5, as_of=as_of, symbol="RARE", timeframe="1h", end=BASE - timedelta(days=1)
        )
    with pytest.raises(InvalidInputError) as caught:
        await seeded.query.nearest(None, 5, as_of=as_of, timeframe="1h")
    assert caught.value.field == "symbol"


# --- writes and scores (small fresh databases) --------------------------------------------


def _row(signal_id: str, direction: list[float], **overrides: object) -> PatternEmbed:
    values: dict[str, object] = {
        "signal_id": signal_id,
        "symbol": "EURUSD",
        "timeframe": "1h",
        "ts": BASE,
        "embed": tuple(direction + [0.0] * (EMBED_DIM - len(direction))),
        "pattern": "flag",
        "quality": 0.5,
        "pole_katr": 1.0,
        "model_version": "m1",
    }
    values.update(overrides)
    return PatternEmbed(**values)  # type: ignore[arg-type]


async def test_upserts_are_idempotent_and_keep_outcomes(
    small: tuple[PatternStore, SimilarityQuery],
) -> None:
    store, _ = small
    rows = [_row(f"s{i}", [1.0, float(i)]) for i in range(5)]
    first = await store.upsert_many(rows)
    assert (first.inserted, first.updated, first.unchanged) == (5, 0, 0)
    replay = await store.upsert_many(rows + rows[:2])  # duplicates: the last one counts
    assert (replay.inserted, replay.updated, replay.unchanged) == (0, 0, 5)
    assert await store.record_outcome("s1", 1.5, BASE + timedelta(hours=2))
    changed = await store.upsert_many([_row("s1", [0.0, 1.0], model_version="m2"), rows[2]])
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 1)
    assert await store.count() == 5
    pool = store.source.pool
    assert pool is not None
    kept = await pool.fetchrow(
        "SELECT realised_r, outcome_known_at, model_version, embed::real[] AS e "
        "FROM pattern_embeds WHERE signal_id = 's1'"
    )
    assert kept is not None
    assert (kept["realised_r"], kept["outcome_known_at"], kept["model_version"]) == (
        1.5,
        BASE + timedelta(hours=2),
        "m2",
    )
    assert kept["e"][:2] == [0.0, 1.0]


async def test_the_latest_known_outcome_wins_and_unknown_signals_are_reported(
    small: tuple[PatternStore, SimilarityQuery],
) -> None:
    store, _ = small
    await store.upsert_many([_row("s1", [1.0])])
    assert not await store.record_outcome("nope", 1.0, BASE)
    assert await store.record_outcome("s1", 2.0, BASE + timedelta(hours=5))
    assert not await store.record_outcome("s1", -1.0, BASE + timedelta(hours=1))  # stale
    assert await store.record_outcome("s1", 0.5, BASE + timedelta(hours=6))  # a relabel
    pool = store.source.pool
    assert pool is not None
    assert await pool.fetchval("SELECT realised_r FROM pattern_embeds") == 0.5


async def test_sim_conf_and_hist_rr_pct_by_hand(
    small: tuple[PatternStore, SimilarityQuery],
) -> None:
    store, query = small
    # Unit directions at known angles to the query e1: cosines 1.0, 0.8, 0.6, 0.0.
    rows = [
        _row("a", [1.0, 0.0], quality=0.9),
        _row("b", [0.8, 0.6], quality=0.5, pattern="wedge"),
        _row("c", [0.6, 0.8], quality=0.7),
        _row("d", [0.0, 1.0], quality=0.1),
        _row("late", [1.0, 0.01], quality=1.0, ts=BASE + timedelta(days=3)),  # after as_of
        _row("open", [1.0, 0.02], quality=1.0),  # no outcome known
    ]
    await store.upsert_many(rows)
    known = BASE + timedelta(hours=1)
    for signal_id, r in (("a", 2.0), ("b", -1.0), ("c", 1.0), ("d", 3.0), ("late", 9.0)):
        assert await store.record_outcome(signal_id, r, known)
    as_of = BASE + timedelta(days=1)
    result = await query.nearest([1.0] + [0.0] * (EMBED_DIM - 1), 3, as_of=as_of)
    assert [n.signal_id for n in result.neighbours] == ["a", "b", "c"]
    assert [n.similarity for n in result.neighbours] == pytest.approx([1.0, 0.8, 0.6], abs=1e-6)
    # mean quality (0.9 + 0.5 + 0.7) / 3 = 0.7; mean cosine 0.8 -> 0.56
    assert result.sim_conf == pytest.approx(0.56, abs=1e-6)
    # R sorted [-1, 1, 2], p 0.65 -> position 1.3 -> 1 + 0.3 * (2 - 1) = 1.3
    assert result.hist_rr_pct == pytest.approx(1.3, abs=1e-6)
    p90 = await query.nearest([1.0] + [0.0] * (EMBED_DIM - 1), 3, as_of=as_of, p=0.9)
    assert p90.hist_rr_pct == pytest.approx(1.8, abs=1e-6)  # position 1.8 -> 1 + 0.8
    wedges = await query.nearest([1.0, 0.0] + [0.0] * 62, 3, as_of=as_of, pattern="wedge")
    assert [n.signal_id for n in wedges.neighbours] == ["b"]
    assert wedges.sim_conf == pytest.approx(0.5 * 0.8, abs=1e-6)
    none = await query.nearest([1.0] + [0.0] * 63, 3, as_of=BASE)  # nothing known yet
    assert none.neighbours == () and none.sim_conf is None and none.hist_rr_pct is None


async def test_bad_queries_name_their_field(small: tuple[PatternStore, SimilarityQuery]) -> None:
    _, query = small
    probe = [1.0] * EMBED_DIM
    cases: list[tuple[dict[str, object], str]] = [
        ({"k": 0}, "k"),
        ({"k": 1001}, "k"),
        ({"as_of": datetime(2024, 1, 1)}, "as_of"),
        ({"p": 1.2}, "p"),
        ({"embed": [1.0] * 3}, "embed"),
        ({"symbol": ""}, "symbol"),
    ]
    for overrides, field in cases:
        args: dict[str, object] = {"embed": probe, "k": 5, "as_of": BASE} | overrides
        with pytest.raises(InvalidInputError) as caught:
            await query.nearest(**args)  # type: ignore[arg-type]
        assert caught.value.field == field


# --- a server without pgvector -------------------------------------------------------------

OS_PG15 = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def server_without_pgvector(hindsight_test_dir: Path) -> Iterator[str]:
    if not (OS_PG15 / "initdb").exists():
        pytest.skip("no PostgreSQL without pgvector on this machine (Debian's 15 is absent)")
    if (
        OS_PG15.parent.parent.parent.parent / "share/postgresql/15/extension/vector.control"
    ).exists():
        pytest.skip("this machine's PostgreSQL 15 has pgvector")
    root = hindsight_test_dir / f"pg15-{uuid.uuid4().hex[:8]}"
    server = PostgresServer(
        data_dir=root,
        port=free_port(),
        log_file=root.parent / "logs" / f"{root.name}.log",
        fsync=False,
        port_env=None,
        bindir=OS_PG15,
    )
    running = start_server(server)
    try:
        yield server.url
    finally:
        running.stop()


async def test_a_server_without_pgvector_is_a_configuration_error(
    server_without_pgvector: str, nats_url: str, tmp_path: Path
) -> None:
    memory = build_memory(
        build_settings(
            database_url=server_without_pgvector, nats_url=nats_url, data_dir=tmp_path / "data"
        )
    )
    with pytest.raises(ConfigurationError, match=r'extension "vector" \(pgvector\)'):
        await memory.start()  # the pgvector part comes first: nothing else started
    with pytest.raises(ConfigurationError, match="pgvector >= 0.8"):
        await require_pgvector(server_without_pgvector)
    # Run directly, the migration names the extension too (its own check, before CREATE).
    with pytest.raises(asyncpg.FeatureNotSupportedError, match=r'extension "vector"'):
        await create_pool(server_without_pgvector, schema="memory", migrations_dir=MIGRATIONS)


async def test_the_dev_servers_pgvector_has_iterative_scans(database_url: str) -> None:
    assert version_tuple(await require_pgvector(database_url)) >= PGVECTOR_MIN
