"""Market bar ingest: ``bar.closed`` bars/s through real NATS JetStream and PostgreSQL, next
to a raw asyncpg COPY of the same rows.

N valid bars (``HINDSIGHT_BENCH_MARKET_SYMBOLS`` series of 1m bars, contiguous, published
in time order across the series as a live feed sends them) are published first (not timed
as ingest); then the market service starts and the drain is timed until every bar is a row
(gated, written, derived series computed, in one transaction per fetched batch). Beside
it, in the same run: the service's write path alone (``BarIngest.on_bars`` on the parsed
events, batches of the same size, no NATS: the gate, the upsert, the derived series), the
storage call alone (``BarTable.upsert``, the one multi-row statement per batch, nothing
else) and the baseline, a raw ``copy_records_to_table`` of the same rows into the same
table (another schema): no NATS, no parsing, no gate, no derived series, no conflict
handling, no acks. Prints figures and the ratios; asserts no timing.
``HINDSIGHT_BENCH_MARKET_BARS`` sets N (default 200,000); ``HINDSIGHT_BENCH_MARKET_BATCH``
the service's ``bar_batch_size`` (default 500, the service's default). Run with
``make bench`` or ``pytest -m bench bench/test_bench_ingest_market.py -s``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime, timedelta

import nats
import pytest

from hindsight.common.broker import STREAM, create_broker, ensure_streams
from hindsight.common.db import create_pool
from hindsight.common.events import BarClosed
from hindsight.common.settings import BaseServiceSettings
from hindsight.market.app import MarketService, build_settings
from hindsight.market.ingest import BarIngest, bar_from_event
from hindsight.market.storage import MIGRATIONS, Storage

pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]

BARS = int(os.environ.get("HINDSIGHT_BENCH_MARKET_BARS", "200000"))
BATCH = int(os.environ.get("HINDSIGHT_BENCH_MARKET_BATCH", "500"))
SYMBOLS = int(os.environ.get("HINDSIGHT_BENCH_MARKET_SYMBOLS", "20"))
BASES = "BTC ETH SOL XRP ADA DOGE DOT LTC BCH BNB AVAX LINK TRX ATOM XLM ETC UNI TON NEAR APT"
START = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
COLUMNS = [
    "symbol",
    "timeframe",
    "ts",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "vwap",
    "source",
]


def generate_bars(n: int, symbols: int, *, seed: int) -> list[BarClosed]:
    """``n`` valid 1m bars of ``symbols`` crypto series (24x7: no gaps), contiguous, in
    time order across the series (bar t of every series, then bar t + 1)."""
    bases = BASES.split()
    if not 1 <= symbols <= len(bases):
        raise ValueError(f"HINDSIGHT_BENCH_MARKET_SYMBOLS: 1..{len(bases)}, got {symbols}")
    rng = random.Random(seed)
    names = [f"{base}USDT" for base in bases[:symbols]]
    last = {name: 100.0 + 10 * i for i, name in enumerate(names)}
    occurred_at = datetime.now(UTC)
    bars: list[BarClosed] = []
    for i in range(n):
        symbol = names[i % symbols]
        open_ = last[symbol]
        close = round(open_ * (1 + rng.gauss(0, 0.001)), 6)
        high = round(max(open_, close) * (1 + rng.random() * 0.0005), 6)
        low = round(min(open_, close) * (1 - rng.random() * 0.0005), 6)
        last[symbol] = close
        bars.append(
            BarClosed(
                schema_version=BarClosed.SCHEMA_VERSION,
                occurred_at=occurred_at,
                source="bench-feed",
                symbol=symbol,
                timeframe="1m",
                ts=START + (i // symbols) * MINUTE,
                open=open_,
                high=high,
                low=low,
                close=close,
                volume=round(rng.uniform(1, 1000), 3),
                trades=rng.randint(1, 500),
                vwap=round((high + low + close) / 3, 6),
            )
        )
    return bars


async def publish_bars(nats_url: str, bars: list[BarClosed], *, concurrency: int = 512) -> int:
    """Publish in order, ``concurrency`` pipelined at a time, ``Nats-Msg-Id`` as producers
    set it; returns the messages stored (duplicates not counted)."""
    settings = BaseServiceSettings(nats_url=nats_url)
    broker = create_broker(settings, client_name="bench")
    await broker.connect()
    try:
        await ensure_streams(broker, settings)
    finally:
        await broker.stop()
    client = await nats.connect(nats_url, connect_timeout=5)
    try:
        js = client.jetstream(timeout=30.0)
        acked = 0
        for lo in range(0, len(bars), concurrency):
            acks = await asyncio.gather(
                *(
                    js.publish(
                        b.subject,
                        b.to_json_bytes(),
                        stream=STREAM,
                        headers={"Nats-Msg-Id": b.message_id(), "content-type": "application/json"},
                    )
                    for b in bars[lo : lo + concurrency]
                )
            )
            acked += sum(1 for ack in acks if not ack.duplicate)
        return acked
    finally:
        await client.close()


async def test_bench_market_bar_ingest_vs_raw_copy(
    nats_url: str, fresh_database: str, jetstream_reset: None
) -> None:
    bars = generate_bars(BARS, SYMBOLS, seed=15)
    series = min(SYMBOLS, BARS)

    # The baseline: the same rows, COPY'd by asyncpg into the market's bars table.
    rows = [
        (
            b.symbol,
            b.timeframe,
            b.ts,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.trades,
            b.vwap,
            b.source,
        )
        for b in bars
    ]
    raw = await create_pool(fresh_database, schema="raw_copy", migrations_dir=MIGRATIONS)
    try:
        start = time.perf_counter()
        async with raw.acquire() as conn:
            await conn.copy_records_to_table(
                "bars", records=rows, columns=COLUMNS, schema_name="raw_copy"
            )
        copy_s = time.perf_counter() - start
    finally:
        await raw.close()

    # The storage call alone: BarTable.upsert, one transaction per batch of BATCH.
    upsert_pool = await create_pool(fresh_database, schema="upsert_only", migrations_dir=MIGRATIONS)
    try:
        table = Storage(upsert_pool).bars
        items = [bar_from_event(b) for b in bars]
        start = time.perf_counter()
        for lo in range(0, BARS, BATCH):
            async with upsert_pool.acquire() as conn, conn.transaction():
                await table.upsert(conn, items[lo : lo + BATCH])
        upsert_s = time.perf_counter() - start
    finally:
        await upsert_pool.close()

    # The service's write path alone: BarIngest.on_bars on parsed events, no NATS.
    direct = await create_pool(fresh_database, schema="direct", migrations_dir=MIGRATIONS)
    try:
        ingest = BarIngest(Storage(direct))
        start = time.perf_counter()
        for lo in range(0, BARS, BATCH):
            await ingest.on_bars(bars[lo : lo + BATCH])
        direct_s = time.perf_counter() - start
        direct_rows = await direct.fetchval("SELECT count(*) FROM bars WHERE atr14 IS NOT NULL")
    finally:
        await direct.close()

    start = time.perf_counter()
    stored = await publish_bars(nats_url, bars)
    publish_s = time.perf_counter() - start
    assert stored == BARS

    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        http_port=0,
        bar_batch_size=BATCH,
    )
    service = MarketService(settings)
    cpu = time.process_time()
    start = time.perf_counter()
    await service.start()
    try:
        pool = service.storage.pool
        while True:
            count = await pool.fetchval("SELECT count(*) FROM bars")
            if count >= BARS:
                break
            await asyncio.sleep(0.05)
        drain_s = time.perf_counter() - start
        cpu_s = time.process_time() - cpu
        done = await pool.fetchrow(
            """SELECT count(*) AS bars, count(atr14) AS derived,
                      count(DISTINCT symbol) AS symbols,
                      (SELECT count(*) FROM gaps) AS gaps FROM bars"""
        )
    finally:
        await service.stop()
    assert done is not None
    # Every bar stored, no gap, and the same derived series as the write path alone wrote.
    assert (done["bars"], done["symbols"], done["gaps"]) == (BARS, series, 0)
    assert done["derived"] == direct_rows > 0

    rate = BARS / drain_s
    copy_rate = BARS / copy_s
    print(f"\nmarket bar ingest, {BARS:,} bar.closed ({series} series of 1m bars, time order):")
    print(f"  published to JetStream in {publish_s:.1f} s ({BARS / publish_s:,.0f} bars/s)")
    print(
        f"  market drain (batch {BATCH}, start-up included): {drain_s:.2f} s = {rate:,.0f} "
        f"bars/s; CPU of this process meanwhile {cpu_s:.2f} s = {cpu_s / BARS * 1e6:.0f} µs/bar"
    )
    print(
        f"  write path alone (BarIngest.on_bars: gate + upsert + derived series, batches of "
        f"{BATCH}, no NATS): {direct_s:.2f} s = {BARS / direct_s:,.0f} bars/s"
    )
    print(
        f"  storage call alone (BarTable.upsert, one transaction per batch of {BATCH}): "
        f"{upsert_s:.2f} s = {BARS / upsert_s:,.0f} bars/s"
    )
    print(f"  raw asyncpg COPY of the same rows: {copy_s:.2f} s = {copy_rate:,.0f} rows/s")
    print(
        f"  ratios: market / raw COPY {rate / copy_rate:.2f}, write path alone / raw COPY "
        f"{copy_s / direct_s:.2f}, upsert alone / raw COPY {copy_s / upsert_s:.2f}, "
        f"market / write path alone {direct_s / drain_s:.2f}; aim >= 50,000 bars/s"
    )
