"""The derived series written through the in-process history cache are, bit for bit, the
ones the tail-reading path wrote (the 256 stored bars before a batch's first new or
corrected bar, read back from PostgreSQL): whatever the batch sizes, with corrections, a
rejected batch, and another writer of the same series in between."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from hindsight.common.db import create_pool
from hindsight.market.derived import CONTEXT_BARS, derive
from hindsight.market.domain.bars import Bar
from hindsight.market.history import HistoryCache
from hindsight.market.ingest import BarIngest, BarsRejected
from hindsight.market.storage import MIGRATIONS, BarIn, Storage

pytestmark = pytest.mark.integration

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
SERIES = [("BTCUSD", "1h"), ("ETHUSD", "1h"), ("SOLUSD", "1h")]
Key = tuple[str, str, datetime]
Row = tuple[float | None, float | None, float | None, float | None, str | None]


def bar(symbol: str, i: int, rng: random.Random, *, bump: float = 0.0) -> BarIn:
    base = 100.0 + 50 * SERIES.index((symbol, "1h"))
    open_ = round(base * (1 + rng.gauss(0, 0.01)), 6) + bump
    close = round(open_ * (1 + rng.gauss(0, 0.003)), 6)
    high = round(max(open_, close) * (1 + rng.random() * 0.002), 6)
    low = round(min(open_, close) * (1 - rng.random() * 0.002), 6)
    b = Bar(symbol, "1h", START + i * HOUR, open_, high, low, close, rng.uniform(1, 100))
    return BarIn(bar=b, source="test")


def batches(seed: int) -> list[list[BarIn]]:
    """600 bars of each series, interleaved, in batches of random sizes; corrections of
    bars inside and beyond the last 256, a duplicate, a new bar and a correction together."""
    rng = random.Random(15)  # the same bars whatever the split
    stream = [bar(s, i, rng) for i in range(600) for s, _ in SERIES]
    corrections = {
        900: bar("BTCUSD", 250, rng, bump=0.5),  # within the last 256 of BTCUSD
        1500: bar("ETHUSD", 20, rng, bump=1.0),  # far beyond them: the whole tail again
        1650: bar("SOLUSD", 549, rng, bump=0.25),
    }
    split = random.Random(seed)
    out: list[list[BarIn]] = []
    i = 0
    while i < len(stream):
        n = split.choice([1, 2, 7, 60, 500, 1000])
        chunk = stream[i : i + n]
        for at, fix in corrections.items():
            if i <= at < i + n:
                chunk.append(fix)
        if i == 600:
            chunk.append(stream[0])  # a duplicate
        out.append(chunk)
        i += n
    return out


def reference(batches: list[list[BarIn]]) -> dict[Key, Row]:
    """The tail-reading path, with no database: per batch and series, the derived series
    from its first new or corrected bar on, from the 256 bars before it."""
    table: dict[tuple[str, str], dict[datetime, Bar]] = {}
    out: dict[Key, Row] = {}
    for chunk in batches:
        accepted: dict[tuple[str, str], list[datetime]] = {}
        for item in chunk:
            series = (item.bar.symbol, item.bar.timeframe)
            bars = table.setdefault(series, {})
            if bars.get(item.bar.ts) == item.bar:
                continue
            bars[item.bar.ts] = item.bar
            accepted.setdefault(series, []).append(item.bar.ts)
        for series, ts in accepted.items():
            since = min(ts)
            keys = sorted(table[series])
            before = [k for k in keys if k < since][-CONTEXT_BARS:]
            tail = [table[series][k] for k in before + [k for k in keys if k >= since]]
            for b, d in zip(tail, derive(tail), strict=True):
                if b.ts >= since:
                    out[(*series, b.ts)] = (
                        d.atr14,
                        d.ema21,
                        d.rsi14,
                        d.realised_vol20,
                        d.indicator_version,
                    )
    return out


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(fresh_database, schema="market", migrations_dir=MIGRATIONS)
    yield pool
    await pool.close()


async def stored(pool: asyncpg.Pool) -> dict[Key, Row]:
    rows = await pool.fetch(
        """SELECT symbol, timeframe, ts, atr14, ema21, rsi14, realised_vol20, indicator_version
           FROM bars"""
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}  # type: ignore[misc]


def assert_same(got: dict[Key, Row], want: dict[Key, Row]) -> None:
    assert got.keys() == want.keys()
    differ = [k for k in want if got[k] != want[k]]  # exact float equality
    assert not differ, f"{len(differ)} bars differ, first {differ[0]}: {got[differ[0]]}"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_cached_history_writes_the_same_derived_series_as_reading_the_tail(
    pool: asyncpg.Pool, seed: int
) -> None:
    chunks = batches(seed)
    cache = HistoryCache()
    ingest = BarIngest(Storage(pool), history=cache)
    for chunk in chunks:
        await ingest.ingest(chunk, source="test", strict=True)
    assert len(cache) == len(SERIES)
    assert_same(await stored(pool), reference(chunks))
    # The warm-up ends well inside the first 256 bars: there the values are the whole
    # series' own, so some are checked against a recomputation from the first bar.
    assert sum(1 for row in (await stored(pool)).values() if row[0] is not None) > 1700


async def test_a_rejected_batch_and_another_writer_leave_no_stale_history(
    pool: asyncpg.Pool,
) -> None:
    chunks = batches(4)
    cache = HistoryCache()
    ingest = BarIngest(Storage(pool), history=cache)
    other = BarIngest(Storage(pool))  # another process: its own cache
    rng = random.Random(99)
    for number, chunk in enumerate(chunks):
        if number == 3:
            good = chunk[0]
            bad = BarIn(
                bar=Bar(
                    good.bar.symbol, "1h", good.bar.ts + 10_000 * HOUR, 10, 9, 11, 10, 1
                ),  # high < low
                source="test",
            )
            with pytest.raises(BarsRejected):
                await ingest.ingest([*chunk, bad], source="test", strict=True)
        writer = other if number % 3 == 2 else ingest
        await writer.ingest(chunk, source="test", strict=True)
    # The other writer's correction of a bar the first one has cached.
    fix = bar("BTCUSD", 590, rng, bump=0.3)
    await other.ingest([fix], source="test", strict=True)
    last = bar("BTCUSD", 600, rng)
    await ingest.ingest([last], source="test", strict=True)
    assert_same(await stored(pool), reference([*chunks, [fix], [last]]))
