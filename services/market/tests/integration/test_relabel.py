"""Relabelling against real NATS JetStream and PostgreSQL.

- A corrected bar (a ``bar.closed`` with the same key and other values) inside a label's
  window relabels it: in the horizon, and in the ATR look-back alone. The row is replaced
  (revision 1), a second ``signal.labeled`` with ``label_revision`` 1 reaches the stream
  (not dropped as a duplicate), a label whose window does not hold the bar is left alone,
  and a correction that leaves the labels as they were publishes nothing.
- A changed label spec labels every signal again under its own hash; the old labels stay,
  under theirs, and the two never mix.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.common.events import SignalLabeled
from hindsight.market.app import MarketService, build_settings, label_spec
from hindsight.market.cli import import_bars

from .helpers import HOUR, START, bar_body, eventually, fetch_all, publish, signal_body
from .test_backlabeler import bar_items

pytestmark = pytest.mark.integration


def settings(nats_url: str, dsn: str, **spec: Any) -> Any:
    return build_settings(
        nats_url=nats_url,
        database_url=dsn,
        http_port=0,
        outbox_poll_s=0.2,
        sweep_every_s=60.0,  # a long sweep: the correction itself must trigger the relabel
        cluster_refresh_s=60.0,
        **spec,
    )


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def labeled_on_stream(nc: NatsClient) -> dict[tuple[str, str], list[SignalLabeled]]:
    """Every signal.labeled on the stream, by (signal_id, label_spec), in stream order."""
    found: dict[tuple[str, str], list[SignalLabeled]] = defaultdict(list)
    for message in await fetch_all(nc, "signal.labeled", idle_s=0.3):
        event = SignalLabeled.model_validate(json.loads(message.data))
        assert message.headers["Nats-Msg-Id"] == event.message_id()
        found[(event.signal_id, event.label_spec)].append(event)
    return found


@pytest.fixture
async def market(
    fresh_database: str, nats_url: str, jetstream_reset: None
) -> AsyncIterator[MarketService]:
    service = MarketService(settings(nats_url, fresh_database))
    await service.start()
    yield service
    await service.stop()


async def test_a_corrected_bar_relabels_the_signals_whose_window_holds_it(
    market: MarketService, nats_client: NatsClient, fresh_database: str
) -> None:
    spec = label_spec(market.settings).spec_hash()
    await import_bars(fresh_database, bar_items(range(150)))
    # Each signal at bar k reads bars k-100 .. k+5 (ATR history, then the horizon).
    signals = {
        "horizon": START + 110 * HOUR,  # bar 112 is in its horizon (110 .. 115)
        "lookback": START + 144 * HOUR,  # bar 112 is in its ATR history (44 .. 143)
        "outside": START + 100 * HOUR,  # reads bars 0 .. 105: not 112
    }
    for signal_id, ts in signals.items():
        await publish(nats_client, "signal.features", signal_body(signal_id, ts), msg_id=signal_id)

    async def first_labels() -> dict[tuple[str, str], list[SignalLabeled]] | None:
        got = await labeled_on_stream(nats_client)
        return got if len(got) == 3 else None

    before = await eventually(first_labels, what="3 first labels")
    assert {k: [e.label_revision for e in v] for k, v in before.items()} == {
        (s, spec): [0] for s in signals
    }

    # Bar 112 corrected: a spike far above the target, through bar.closed as a feed sends it.
    original = bar_body(112)
    corrected = bar_body(112, high=original["high"] + 40.0, close=original["high"] + 30.0)
    await publish(nats_client, "bar.closed", corrected, msg_id="bar.closed:112:corrected")

    async def relabelled() -> dict[tuple[str, str], list[SignalLabeled]] | None:
        got = await labeled_on_stream(nats_client)
        return got if sum(len(v) for v in got.values()) >= 5 else None

    after = await eventually(relabelled, what="2 relabels on the stream")
    assert {k[0]: [e.label_revision for e in v] for k, v in after.items()} == {
        "horizon": [0, 1],
        "lookback": [0, 1],
        "outside": [0],
    }
    horizon = after[("horizon", spec)]
    assert horizon[1].runup_r > horizon[0].runup_r  # the spike is in its horizon
    assert horizon[1].message_id() == f"signal.labeled:horizon:{spec}:r1"
    lookback = after[("lookback", spec)]
    assert lookback[1].mfe_atr != lookback[0].mfe_atr  # its ATR read the corrected bar

    rows = await fetch(
        fresh_database,
        "SELECT signal_id, revision, labels FROM market.labels ORDER BY signal_id",
    )
    table = {r["signal_id"]: (r["revision"], json.loads(r["labels"])) for r in rows}
    assert {s: rev for s, (rev, _) in table.items()} == {
        "horizon": 1,
        "lookback": 1,
        "outside": 0,
    }
    assert table["horizon"][1]["runup_r"] == horizon[1].runup_r  # the row is the newest
    async with httpx.AsyncClient(timeout=10.0) as client:
        shown = await client.get(
            f"http://127.0.0.1:{market.http.port}/v1/labels",
            params={"signal_id": "horizon", "label_spec": spec},
        )
    assert [(x["label_revision"], x["runup_r"]) for x in shown.json()["labels"]] == [
        (1, horizon[1].runup_r)
    ]
    checked = await fetch(
        fresh_database,
        "SELECT count(*) AS n FROM market.bar_corrections WHERE relabel_checked_at IS NULL",
    )
    assert checked[0]["n"] == 0

    # A correction of the volume alone changes no label: checked, nothing published.
    volume_only = {**corrected, "volume": corrected["volume"] + 1.0}
    await publish(nats_client, "bar.closed", volume_only, msg_id="bar.closed:112:volume")

    async def both_checked() -> bool:
        rows = await fetch(
            fresh_database,
            """SELECT count(*) FILTER (WHERE relabel_checked_at IS NOT NULL) AS done,
                      count(*) AS n FROM market.bar_corrections""",
        )
        return rows[0]["n"] == rows[0]["done"] == 2

    await eventually(both_checked, what="the volume correction checked")
    final = await labeled_on_stream(nats_client)
    assert sum(len(v) for v in final.values()) == 5
    revisions = await fetch(fresh_database, "SELECT sum(revision) AS n FROM market.labels")
    assert revisions[0]["n"] == 2


async def test_a_changed_spec_labels_every_signal_again_and_never_mixes(
    fresh_database: str, nats_url: str, jetstream_reset: None, nats_client: NatsClient
) -> None:
    await import_bars(fresh_database, bar_items(range(150)))
    ids = [f"s{k}" for k in range(10)]
    first = MarketService(settings(nats_url, fresh_database))
    old = label_spec(first.settings).spec_hash()
    await first.start()
    try:
        for k, signal_id in enumerate(ids):
            ts = START + (100 + 4 * k) * HOUR
            side = "buy" if k % 2 else "sell"
            body = signal_body(signal_id, ts, side=side)
            await publish(nats_client, "signal.features", body, msg_id=signal_id)

        async def ten() -> bool:
            return len(await labeled_on_stream(nats_client)) == 10

        await eventually(ten, what="10 labels under the first spec")
    finally:
        await first.stop()

    # The same signals, not sent again: a new spec (another horizon) finds them itself.
    second = MarketService(settings(nats_url, fresh_database, label_horizon_bars=3))
    new = label_spec(second.settings).spec_hash()
    assert new != old
    await second.start()
    try:

        async def twenty() -> dict[tuple[str, str], list[SignalLabeled]] | None:
            got = await labeled_on_stream(nats_client)
            return got if len(got) == 20 else None

        found = await eventually(twenty, what="10 more labels under the new spec")
        # Both specs' labels stay queryable, by hash.
        base = f"http://127.0.0.1:{second.http.port}/v1/labels"
        async with httpx.AsyncClient(timeout=10.0) as client:
            both = (await client.get(base, params={"signal_id": "s0"})).json()
            only_old = (
                await client.get(base, params={"signal_id": "s0", "label_spec": old})
            ).json()
            bad = await client.get(base, params={"signal_id": "s0", "label_spec": "XYZ"})
        assert sorted((x["label_spec"], x["horizon_bars"]) for x in both["labels"]) == sorted(
            [(old, 6), (new, 3)]
        )
        assert [(x["label_spec"], x["label_revision"]) for x in only_old["labels"]] == [(old, 0)]
        assert bad.status_code == 422 and "label_spec" in bad.text, bad.text
    finally:
        await second.stop()
    assert set(found) == {(s, h) for s in ids for h in (old, new)}
    assert {len(v) for v in found.values()} == {1}  # once per signal and spec
    assert {e.horizon_bars for (_, h), v in found.items() for e in v if h == old} == {6}
    assert {e.horizon_bars for (_, h), v in found.items() for e in v if h == new} == {3}
    by_hash = await fetch(
        fresh_database,
        """SELECT label_spec, count(*) AS n, min((labels->>'horizon_bars')::int) AS lo,
                  max((labels->>'horizon_bars')::int) AS hi
           FROM market.labels GROUP BY label_spec ORDER BY label_spec""",
    )
    assert {r["label_spec"]: (r["n"], r["lo"], r["hi"]) for r in by_hash} == {
        old: (10, 6, 6),
        new: (10, 3, 3),
    }
    pending = await fetch(fresh_database, "SELECT count(*) AS n FROM market.pending_signals")
    assert pending[0]["n"] == 0
