"""Trainer ingest: ``signal.features`` + ``signal.outcome`` events/s through real NATS
JetStream and PostgreSQL, next to a raw asyncpg COPY of the same rows.

N signal/outcome pairs are published first (not timed as ingest); then the trainer starts
and the drain is timed until every signal and every outcome is a row (and no outcome waits
for its result). The baseline copies the same rows into the same tables (another schema)
with ``copy_records_to_table``: no NATS, no parsing, no conflict handling, no acks.
Prints figures and the ratio; asserts no timing. ``HINDSIGHT_BENCH_INGEST_PAIRS`` sets N
(default 50,000, i.e. 100,000 events); ``HINDSIGHT_BENCH_INGEST_BATCH`` the trainer's
ingest batch size. Run with ``make bench`` or
``pytest -m bench bench/test_bench_ingest_trainer.py -s``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from hindsight.common.db import create_pool
from hindsight.devstack.synthetic import generate, publish
from hindsight.trainer.app import build_settings, build_trainer
from hindsight.trainer.ingest import Ingestor
from hindsight.trainer.storage import MIGRATIONS, Storage

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

PAIRS = int(os.environ.get("HINDSIGHT_BENCH_INGEST_PAIRS", "50000"))
BATCH = int(os.environ.get("HINDSIGHT_BENCH_INGEST_BATCH", "1000"))
SIGNAL_COLUMNS = [
    "signal_id",
    "symbol",
    "timeframe",
    "side",
    "ts",
    "features",
    "feature_schema_version",
    "entry_price",
    "trade_id",
    "run_id",
    "setup_id",
    "rule_version",
    "source",
    "occurred_at",
]
OUTCOME_COLUMNS = [
    "signal_id",
    "closed_at",
    "result",
    "entry_price",
    "exit_price",
    "pnl",
    "realised_r",
    "mfe",
    "mae",
    "source",
    "occurred_at",
]


async def test_bench_trainer_ingest_vs_raw_copy(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> None:
    pairs = generate(PAIRS, seed=21, derive_share=0.1)
    events = 2 * PAIRS

    # The baseline: the same rows, COPY'd by asyncpg into the trainer's tables.
    raw = await create_pool(fresh_database, schema="raw_copy", migrations_dir=MIGRATIONS)
    try:
        signal_rows = [
            (
                s.signal_id,
                s.symbol,
                s.timeframe,
                s.side,
                s.ts,
                json.dumps(s.features),
                s.feature_schema_version,
                s.entry_price,
                s.trade_id,
                s.run_id,
                s.setup_id,
                s.rule_version,
                s.source,
                s.occurred_at,
            )
            for s, _ in pairs
        ]
        outcome_rows = [
            (
                o.signal_id,
                o.closed_at,
                o.result,
                o.entry_price,
                o.exit_price,
                o.pnl,
                o.realised_r,
                o.mfe,
                o.mae,
                o.source,
                o.occurred_at,
            )
            for _, o in pairs
        ]
        start = time.perf_counter()
        async with raw.acquire() as conn:
            await conn.copy_records_to_table(
                "signals", records=signal_rows, columns=SIGNAL_COLUMNS, schema_name="raw_copy"
            )
            await conn.copy_records_to_table(
                "outcomes", records=outcome_rows, columns=OUTCOME_COLUMNS, schema_name="raw_copy"
            )
        copy_s = time.perf_counter() - start
    finally:
        await raw.close()

    # The trainer's write path alone: parsed events, batches of BATCH, no NATS.
    direct = await create_pool(fresh_database, schema="direct", migrations_dir=MIGRATIONS)
    try:
        settings = build_settings(database_url=fresh_database, artifact_root=tmp_path)
        ingestor = Ingestor(Storage(direct), settings)
        start = time.perf_counter()
        for lo in range(0, PAIRS, BATCH):
            await ingestor.on_signals([s for s, _ in pairs[lo : lo + BATCH]])
            await ingestor.on_outcomes([o for _, o in pairs[lo : lo + BATCH]])
        direct_s = time.perf_counter() - start
    finally:
        await direct.close()

    start = time.perf_counter()
    await publish(nats_url, pairs, ensure_streams=True)
    publish_s = time.perf_counter() - start

    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        artifact_root=tmp_path / "artifacts",
        http_port=0,
        schedule_enabled=False,
        registry_url="",
        ingest_batch_size=BATCH,
    )
    app = build_trainer(settings)
    cpu = time.process_time()
    start = time.perf_counter()
    await app.start()
    try:
        pool = app.storage.pool
        while True:
            done = await pool.fetchrow(
                """SELECT (SELECT count(*) FROM signals) AS signals,
                          (SELECT count(*) FROM outcomes WHERE result IS NOT NULL) AS outcomes"""
            )
            assert done is not None
            if done["signals"] >= PAIRS and done["outcomes"] >= PAIRS:
                break
            await asyncio.sleep(0.05)
        drain_s = time.perf_counter() - start
        cpu_s = time.process_time() - cpu
        stats = await app.storage.stats()
    finally:
        await app.stop()
    assert (stats.signals, stats.outcomes, stats.pending_outcomes) == (PAIRS, PAIRS, 0)

    trainer_rate = events / drain_s
    copy_rate = events / copy_s
    print(f"\ntrainer ingest, {PAIRS:,} signals + {PAIRS:,} outcomes ({events:,} events):")
    print(f"  published to JetStream in {publish_s:.1f} s ({events / publish_s:,.0f} events/s)")
    print(
        f"  trainer drain (batch {BATCH}, start-up included): {drain_s:.2f} s = "
        f"{trainer_rate:,.0f} events/s ({stats.derived_outcomes:,} results derived); "
        f"CPU of this process meanwhile {cpu_s:.2f} s = {cpu_s / events * 1e6:.0f} µs/event"
    )
    print(
        f"  trainer write path alone (Ingestor, batches of {BATCH}, no NATS): {direct_s:.2f} s "
        f"= {events / direct_s:,.0f} events/s"
    )
    print(f"  raw asyncpg COPY of the same rows: {copy_s:.2f} s = {copy_rate:,.0f} rows/s")
    print(
        f"  ratios: trainer / raw COPY {trainer_rate / copy_rate:.2f}, write path alone / raw "
        f"COPY {copy_s / direct_s:.2f}, trainer / write path alone {direct_s / drain_s:.2f}; "
        "aim >= 20,000 events/s"
    )
