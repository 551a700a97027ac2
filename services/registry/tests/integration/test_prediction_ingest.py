"""prediction.logged ingest in batches, against real NATS JetStream and PostgreSQL: every
prediction stored once, bad input dead-lettered one by one, far fewer writes than events."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from hindsight.common.broker import DLQ_STREAM, STREAM, create_broker, ensure_streams
from hindsight.registry.app import RegistryApp, build_settings

from .helpers import eventually, fetch_all, prediction

pytestmark = pytest.mark.integration

SUBJECT = "prediction.logged"
UNIQUE = 1800
DUPLICATES = 150
MALFORMED = 50
BATCH = 128


def _metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _counts() -> dict[str, float]:
    return {
        "batches": _metric("hindsight_registry_prediction_batch_size_count"),
        "batched": _metric("hindsight_registry_prediction_batch_size_sum"),
        "ingested": _metric("hindsight_registry_predictions_ingested_total"),
        "duplicates": _metric("hindsight_registry_predictions_duplicate_total"),
    }


def _malformed(i: int) -> bytes:
    """Bad input of three kinds: not JSON, a missing field, a probability out of range."""
    if i % 3 == 0:
        return b"{not json"
    body = prediction(f"bad-{i}", 0.5, version="v1")
    if i % 3 == 1:
        del body["signal_id"]
    else:
        body["p_success"] = 1.5
    return json.dumps(body).encode()


def _messages() -> list[tuple[bytes, str]]:
    """(body, Nats-Msg-Id) of 2,000 messages in a shuffled order.

    A duplicate carries its own Nats-Msg-Id so that JetStream keeps it (a producer's
    retry after the duplicate window, or a replay) and the registry must drop it.
    """
    rng = random.Random(12)
    unique = [prediction(f"sig-{i}", rng.random(), version="v1") for i in range(UNIQUE)]
    out = [(json.dumps(b).encode(), f"{SUBJECT}:{b['prediction_id']}") for b in unique]
    for k, body in enumerate(rng.sample(unique, DUPLICATES)):
        out.append((json.dumps(body).encode(), f"{SUBJECT}:{body['prediction_id']}:again-{k}"))
    out += [(_malformed(i), f"{SUBJECT}:malformed-{i}") for i in range(MALFORMED)]
    rng.shuffle(out)
    return out


async def _publish(nc: NatsClient, messages: list[tuple[bytes, str]]) -> None:
    js = nc.jetstream()
    for body, msg_id in messages:
        await js.publish(SUBJECT, body, stream=STREAM, headers={"Nats-Msg-Id": msg_id})


@pytest.fixture
async def registry(
    fresh_database: str, nats_url: str, jetstream_reset: None, tmp_path: Path
) -> AsyncIterator[RegistryApp]:
    (tmp_path / "artifacts").mkdir()
    app = RegistryApp(
        build_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            artifact_root=tmp_path / "artifacts",
            http_port=0,
            max_deliveries=2,
            evaluate_every_s=3600.0,
            auto_rollback=False,
            prediction_batch_size=BATCH,
            prediction_batch_pause_s=0.01,
        )
    )
    yield app
    await app.stop()


async def test_predictions_are_stored_once_in_batches_and_bad_ones_dead_lettered(
    registry: RegistryApp, nats_client: NatsClient, fresh_database: str
) -> None:
    messages = _messages()
    before = _counts()
    # Most of them wait in the stream before the registry starts: the catch-up after a
    # restart; the rest arrive while it runs.
    streams = create_broker(registry.settings, client_name="test-streams")
    await streams.connect()
    await ensure_streams(streams, registry.settings)
    await streams.stop()
    await _publish(nats_client, messages[:1500])
    await registry.start()
    await _publish(nats_client, messages[1500:])

    async def stored() -> int | None:
        conn = await asyncpg.connect(fresh_database)
        try:
            n = int(await conn.fetchval("SELECT count(*) FROM registry.predictions"))
        finally:
            await conn.close()
        return n if n >= UNIQUE else None

    assert await eventually(stored, timeout=60, what="every prediction stored") == UNIQUE

    async def all_seen() -> bool:
        return _counts()["batched"] - before["batched"] >= UNIQUE + DUPLICATES

    await eventually(all_seen, timeout=30, what="duplicates seen")
    dead = await fetch_all(nats_client, f"dlq.{SUBJECT}", MALFORMED, stream=DLQ_STREAM)
    assert len(dead) == MALFORMED
    assert all(m.headers["Hindsight-Error-Type"] == "InvalidEventError" for m in dead)

    after = _counts()
    delta = {key: after[key] - before[key] for key in after}
    assert delta["ingested"] == UNIQUE
    assert delta["duplicates"] == DUPLICATES
    assert delta["batched"] == UNIQUE + DUPLICATES
    # One INSERT per batch: a catch-up of 1,500 fills batches of 128.
    assert delta["batches"] <= (UNIQUE + DUPLICATES) / 10, delta
    print(f"\n{UNIQUE + DUPLICATES + MALFORMED} messages -> {delta['batches']:.0f} batch writes")
