"""The Back-Labeler against real NATS JetStream and PostgreSQL: one signal.labeled per buy
or sell signal (counted on the stream and in the table), holds skipped, signals waiting for
their horizon labelled when its bars arrive, and exactly once across a kill -9 of the
``python -m hindsight.market`` process halfway through a 5,000-signal backlog."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.devstack.ports import free_port
from hindsight.market.app import MarketService, build_settings, label_spec
from hindsight.market.cli import import_bars
from hindsight.market.domain.bars import Bar
from hindsight.market.storage import BarIn

from .helpers import HOUR, START, bar_body, eventually, fetch_all, publish, signal_body

pytestmark = pytest.mark.integration

SPEC_HASH = label_spec(build_settings()).spec_hash()


def bar_items(indices: range, *, symbol: str = "BTCUSD") -> list[BarIn]:
    items = []
    for i in indices:
        body = bar_body(i, symbol=symbol)
        bar = Bar(
            symbol,
            "1h",
            START + i * HOUR,
            body["open"],
            body["high"],
            body["low"],
            body["close"],
            body["volume"],
        )
        items.append(BarIn(bar=bar, source="test-import"))
    return items


async def count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


def labeled_ids(messages: list[object]) -> Counter[str]:
    found: Counter[str] = Counter()
    for message in messages:
        body = json.loads(message.data)  # type: ignore[attr-defined]
        assert body["label_spec"] == SPEC_HASH
        found[body["signal_id"]] += 1
    return found


@pytest.fixture
async def market(
    fresh_database: str, nats_url: str, jetstream_reset: None
) -> AsyncIterator[MarketService]:
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        http_port=0,
        outbox_poll_s=0.2,
        sweep_every_s=60.0,  # a long sweep: bar arrival itself must trigger labelling
        cluster_refresh_s=0.5,
    )
    service = MarketService(settings)
    await service.start()
    yield service
    await service.stop()


async def test_every_buy_and_sell_signal_is_labelled_once_when_its_bars_exist(
    market: MarketService, nats_client: NatsClient, fresh_database: str
) -> None:
    await import_bars(fresh_database, bar_items(range(150)))
    # 40 signals with all their bars, 10 whose horizon is not there yet, 5 holds.
    ready = [(f"r{k}", START + (100 + k) * HOUR, "buy" if k % 2 else "sell") for k in range(40)]
    waiting = [(f"w{k}", START + (146 + k) * HOUR, "buy") for k in range(10)]
    holds = [(f"h{k}", START + (110 + k) * HOUR, "hold") for k in range(5)]
    for signal_id, ts, side in ready + waiting + holds:
        await publish(
            nats_client, "signal.features", signal_body(signal_id, ts, side=side), msg_id=signal_id
        )

    async def forty() -> bool:
        return await count(fresh_database, "SELECT count(*) FROM market.labels") == 40

    await eventually(forty, what="40 labels")
    assert await count(fresh_database, "SELECT count(*) FROM market.pending_signals") == 10

    # The waiting signals' bars arrive as bar.closed: that alone labels them (no sweep).
    for i in range(150, 162):
        await publish(nats_client, "bar.closed", bar_body(i), msg_id=f"bar:{i}")

    async def fifty() -> bool:
        return await count(fresh_database, "SELECT count(*) FROM market.labels") == 50

    await eventually(fifty, what="50 labels")

    async def published() -> list[object] | None:
        got = await fetch_all(nats_client, "signal.labeled", idle_s=0.3)
        return got if len(got) >= 50 else None

    messages = await eventually(published, what="50 signal.labeled")
    ids = labeled_ids(messages)
    assert set(ids) == {s for s, _, _ in ready + waiting}
    assert set(ids.values()) == {1}
    body = json.loads(messages[0].data)  # type: ignore[attr-defined]
    assert body["horizon_bars"] == 6 and body["y_entry"] in (0, 1)
    assert body["liquidity_cluster"] == "M"  # one symbol: the middle expert
    assert (
        await count(fresh_database, "SELECT count(*) FROM market.outbox WHERE sent_at IS NULL") == 0
    )
    # A redelivered signal that is already labelled is not queued again.
    await publish(nats_client, "signal.features", signal_body("r1", ready[1][1]), msg_id="again")
    await asyncio.sleep(1.0)
    assert await count(fresh_database, "SELECT count(*) FROM market.pending_signals") == 0
    assert await count(fresh_database, "SELECT count(*) FROM market.labels") == 50


# --- kill -9 halfway through a backlog ----------------------------------------------------

BACKLOG = 5000


@pytest.fixture
def process_env(fresh_database: str, nats_url: str) -> Iterator[dict[str, str]]:
    yield {
        **os.environ,
        "HINDSIGHT_NATS_URL": nats_url,
        "HINDSIGHT_DATABASE_URL": fresh_database,
        "HINDSIGHT_MARKET_HTTP_PORT": str(free_port()),
        "HINDSIGHT_MARKET_SIGNAL_BATCH_SIZE": "50",
        "HINDSIGHT_MARKET_OUTBOX_POLL_S": "0.2",
        "HINDSIGHT_MARKET_SWEEP_EVERY_S": "2",
    }


async def start_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hindsight.market"], env=env, stdout=handle, stderr=handle
    )
    url = f"http://127.0.0.1:{env['HINDSIGHT_MARKET_HTTP_PORT']}/readyz"

    async def ready() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ready, timeout=60, what="market ready")
    return proc


async def test_kill_9_halfway_through_a_backlog_labels_every_signal_exactly_once(
    fresh_database: str,
    nats_client: NatsClient,
    jetstream_reset: None,
    process_env: dict[str, str],
    tmp_path: Path,
) -> None:
    log = tmp_path / "market.log"
    await import_bars(fresh_database, bar_items(range(1200)))
    proc = await start_process(process_env, log)  # creates the streams and its consumers
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for n in range(BACKLOG):
        ts = START + (100 + n % 1000) * HOUR
        side = "buy" if n % 3 else "sell"
        await publish(
            nats_client, "signal.features", signal_body(f"s{n}", ts, side=side), msg_id=f"s{n}"
        )

    proc = await start_process(process_env, log)
    labelled = 0
    try:
        while labelled == 0:
            assert proc.poll() is None, log.read_text()[-3000:]
            labelled = await count(fresh_database, "SELECT count(*) FROM market.labels")
            await asyncio.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL: no clean stop, whatever was in flight is cut
        proc.wait(timeout=30)
    assert 0 < labelled < BACKLOG, f"killed at {labelled} labels: not halfway"

    proc = await start_process(process_env, log)
    try:

        async def all_labelled() -> bool:
            return await count(fresh_database, "SELECT count(*) FROM market.labels") == BACKLOG

        await eventually(all_labelled, timeout=180, what=f"{BACKLOG} labels")

        async def all_published() -> list[object] | None:
            got = await fetch_all(nats_client, "signal.labeled", idle_s=0.5)
            return got if len(got) >= BACKLOG else None

        messages = await eventually(all_published, timeout=120, what=f"{BACKLOG} events")
        await asyncio.sleep(1.0)
        messages = await fetch_all(nats_client, "signal.labeled", idle_s=0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    ids = labeled_ids(messages)
    assert len(messages) == BACKLOG, f"{len(messages)} signal.labeled for {BACKLOG} signals"
    assert set(ids) == {f"s{n}" for n in range(BACKLOG)}
    assert (
        await count(fresh_database, "SELECT count(DISTINCT signal_id) FROM market.labels")
        == BACKLOG
    )
    assert await count(fresh_database, "SELECT count(*) FROM market.pending_signals") == 0
    assert await count(fresh_database, "SELECT count(*) FROM market.outbox") == BACKLOG
    print(f"killed -9 at {labelled}/{BACKLOG} labels; after restart {len(messages)} events")
