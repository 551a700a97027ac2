"""market in-process against real NATS JetStream and PostgreSQL: the integrity gate, the
DLQ, corrections and their audit, gaps, point-in-time windows over HTTP and NATS."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import DLQ_STREAM
from hindsight.common.events import BARS_WINDOW, format_utc
from hindsight.market.app import MarketService, build_settings

from .helpers import HOUR, START, bar_body, eventually, fetch_all, publish

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[tuple[MarketService, httpx.AsyncClient]]]


@pytest.fixture
async def start_market(
    fresh_database: str, nats_url: str, jetstream_reset: None
) -> AsyncIterator[Start]:
    """Start market in-process (free port) with optional setting overrides."""
    started: list[tuple[MarketService, httpx.AsyncClient]] = []

    async def start(**overrides: Any) -> tuple[MarketService, httpx.AsyncClient]:
        settings = build_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            http_port=0,
            outbox_poll_s=0.2,
            sweep_every_s=1.0,
            cluster_refresh_s=0.5,
            max_deliveries=2,
            **overrides,
        )
        service = MarketService(settings)
        await service.start()
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http.port}", timeout=10)
        started.append((service, client))
        return service, client

    yield start
    for service, client in started:
        await client.aclose()
        await service.stop()


async def bar_rows(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch("SELECT * FROM market.bars ORDER BY symbol, ts"))
    finally:
        await conn.close()


async def query(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def publish_bars(nc: NatsClient, bodies: list[dict[str, Any]], *, tag: str = "") -> None:
    for number, body in enumerate(bodies):
        await publish(nc, "bar.closed", body, msg_id=f"test:{tag}:{number}:{body['ts']}")


async def test_bad_bars_go_to_the_dlq_naming_the_field_and_never_into_the_table(
    start_market: Start, nats_client: NatsClient, fresh_database: str
) -> None:
    await start_market()
    good = [bar_body(i) for i in range(10)]
    await publish_bars(nats_client, good, tag="good")

    async def ten() -> bool:
        return len(await bar_rows(fresh_database)) == 10

    await eventually(ten, what="10 good bars stored")

    nan_body = json.dumps(bar_body(10)).replace('"high": ', '"high": NaN, "x_high": ', 1)
    bad: list[tuple[str, dict[str, Any] | bytes]] = [
        ("high", bar_body(10, high=90.0, low=95.0)),  # high < low
        ("volume", bar_body(12, volume=-1.0)),
        ("high", nan_body.encode()),
        ("timeframe", bar_body(13, timeframe="2h")),
        ("ts", {**bar_body(14), "ts": format_utc(START + 14 * HOUR + timedelta(minutes=7))}),
        ("close", bar_body(15, close=1000.0)),
    ]
    for number, (_, body) in enumerate(bad):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await publish(nats_client, "bar.closed", data, msg_id=f"bad:{number}")

    letters = await eventually(
        lambda: _dead_letters(nats_client, len(bad)), what=f"{len(bad)} dead letters"
    )
    errors = sorted(m.headers["Hindsight-Error"] for m in letters)
    # A message that is not even a valid event is named by its subject first.
    fields = sorted(e.removeprefix("bar.closed: ").split(":", 1)[0] for e in errors)
    assert fields == sorted(field for field, _ in bad), errors
    rows = await bar_rows(fresh_database)
    assert len(rows) == 10
    assert all(r["high"] >= r["low"] and r["volume"] >= 0 for r in rows)
    assert {r["timeframe"] for r in rows} == {"1h"}
    assert [r["ts"] for r in rows] == [START + i * HOUR for i in range(10)]


async def _dead_letters(nc: NatsClient, expected: int) -> list[Any] | None:
    got = await fetch_all(nc, "dlq.bar.closed", stream=DLQ_STREAM, idle_s=0.3)
    return got if len(got) >= expected else None


async def test_time_going_back_in_its_own_series_is_rejected(
    start_market: Start, nats_client: NatsClient, fresh_database: str
) -> None:
    await start_market()
    await publish_bars(nats_client, [bar_body(i) for i in (0, 1, 2, 5)], tag="first")

    async def four() -> bool:
        return len(await bar_rows(fresh_database)) == 4

    await eventually(four, what="4 bars")
    await publish(nats_client, "bar.closed", bar_body(3), msg_id="back:3")
    letters = await eventually(lambda: _dead_letters(nats_client, 1), what="a dead letter")
    error = letters[0].headers["Hindsight-Error"]
    assert error.startswith("ts: ") and "not after" in error, error
    assert len(await bar_rows(fresh_database)) == 4


async def test_a_corrected_bar_replaces_the_old_one_which_is_audited(
    start_market: Start, nats_client: NatsClient, fresh_database: str
) -> None:
    _, client = await start_market()
    await publish_bars(nats_client, [bar_body(i) for i in range(30)], tag="first")

    async def thirty() -> bool:
        return len(await bar_rows(fresh_database)) == 30

    await eventually(thirty, what="30 bars")
    before = {r["ts"]: r for r in await bar_rows(fresh_database)}
    old = before[START + 20 * HOUR]
    # Sent again unchanged (a redelivery from another feed): nothing changes.
    await publish(nats_client, "bar.closed", bar_body(20), msg_id="again:20")
    corrected = bar_body(20, close=old["close"] + 0.25)
    await publish(nats_client, "bar.closed", corrected, msg_id="fix:20")

    async def audited() -> list[asyncpg.Record] | None:
        rows = await query(fresh_database, "SELECT * FROM market.bar_corrections")
        return rows or None

    audit = await eventually(audited, what="the correction audited")
    assert len(audit) == 1
    assert audit[0]["ts"] == START + 20 * HOUR
    assert json.loads(audit[0]["old_values"])["close"] == old["close"]
    assert json.loads(audit[0]["new_values"])["close"] == old["close"] + 0.25
    after = {r["ts"]: r for r in await bar_rows(fresh_database)}
    assert len(after) == 30
    assert after[START + 20 * HOUR]["close"] == old["close"] + 0.25
    # The derived series from the corrected bar on were recomputed; earlier ones were not.
    assert after[START + 19 * HOUR]["ema21"] == before[START + 19 * HOUR]["ema21"]
    assert after[START + 21 * HOUR]["ema21"] != before[START + 21 * HOUR]["ema21"]
    window = (
        await client.get(
            "/v1/bars",
            params={
                "symbol": "BTCUSD",
                "timeframe": "1h",
                "end": format_utc(START + 21 * HOUR),
                "n": 1,
            },
        )
    ).json()
    assert window["bars"][0]["close"] == old["close"] + 0.25


async def test_a_window_never_returns_a_bar_after_end(
    start_market: Start, nats_client: NatsClient, fresh_database: str
) -> None:
    _, client = await start_market()
    await publish_bars(nats_client, [bar_body(i) for i in range(40)], tag="w")

    async def forty() -> bool:
        return len(await bar_rows(fresh_database)) == 40

    await eventually(forty, what="40 bars")
    # end in the middle of bar 25 (opened 25:00, closes 26:00): bar 25 is not known yet.
    end = START + 25 * HOUR + timedelta(minutes=30)
    params = {"symbol": "BTCUSD", "timeframe": "1h", "end": format_utc(end), "n": "10"}
    resp = await client.get("/v1/bars", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    opens = [b["ts"] for b in body["bars"]]
    assert opens == [format_utc(START + i * HOUR) for i in range(15, 25)]
    assert all(b["close_ts"] <= format_utc(end) for b in body["bars"])
    assert body["point_in_time"] == "ts + timeframe <= end"
    assert body["bars"][-1]["atr14"] is not None and body["bars"][-1]["ema21"] is not None
    assert body["bars"][0]["ema21"] is None  # bar 15: EMA21 still warming up
    assert body["indicator_version"]
    # Exactly at a close: that bar is included.
    exact = await client.get("/v1/bars", params={**params, "end": format_utc(START + 26 * HOUR)})
    assert exact.json()["bars"][-1]["ts"] == format_utc(START + 25 * HOUR)
    # Before the first bar closed: nothing.
    early = await client.get("/v1/bars", params={**params, "end": format_utc(START + HOUR / 2)})
    assert early.json()["bars"] == []

    # The NATS request-reply form answers the same.
    reply = await nats_client.request(
        BARS_WINDOW,
        json.dumps(
            {"symbol": "BTCUSD", "timeframe": "1h", "end": format_utc(end), "n": 10}
        ).encode(),
        timeout=5,
    )
    assert json.loads(reply.data) == body

    for bad, field in [
        ({**params, "timeframe": "2h"}, "timeframe"),
        ({**params, "end": "2024-01-02T00:00:00"}, "end"),
        ({k: v for k, v in params.items() if k != "end"}, "end"),
        ({**params, "n": "0"}, "n"),
        ({**params, "n": "abc"}, "n"),
        ({**params, "n": "999999"}, "n"),
    ]:
        resp = await client.get("/v1/bars", params=bad)
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == field, resp.json()
    reply = await nats_client.request(
        BARS_WINDOW, json.dumps({"symbol": "BTCUSD", "timeframe": "1h", "n": 3}).encode(), timeout=5
    )
    assert json.loads(reply.data)["error"]["field"] == "end"


def _sample(metrics: str, line_start: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not exported")


async def test_gaps_are_reported_not_filled_and_counted(
    start_market: Start, nats_client: NatsClient, fresh_database: str
) -> None:
    _, client = await start_market()
    metrics = (await client.get("/metrics")).text
    # Every series exists from the start (at 0 in a fresh process), so increase() sees the first.
    _sample(metrics, 'hindsight_market_bars_total{outcome="rejected",source="bar.closed"}')
    _sample(metrics, 'hindsight_market_bar_rejections_total{field="high"}')
    _sample(metrics, 'hindsight_market_signals_total{outcome="hold_skipped"}')
    gaps_before = _sample(metrics, 'hindsight_market_gaps_total{timeframe="1h"}')
    await publish_bars(nats_client, [bar_body(i) for i in (0, 1, 2, 6, 7)], tag="g")

    async def five() -> bool:
        return len(await bar_rows(fresh_database)) == 5

    await eventually(five, what="5 bars")
    gaps = (await client.get("/v1/gaps", params={"symbol": "BTCUSD", "timeframe": "1h"})).json()
    assert gaps["gaps"] == [
        {
            "after": format_utc(START + 2 * HOUR),
            "before": format_utc(START + 6 * HOUR),
            "missing": 3,
        }
    ]
    assert len(await bar_rows(fresh_database)) == 5  # never filled
    metrics = (await client.get("/metrics")).text
    assert _sample(metrics, 'hindsight_market_gaps_total{timeframe="1h"}') == gaps_before + 3
