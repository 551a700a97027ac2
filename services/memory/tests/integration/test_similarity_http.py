"""The Similarity-API on memory's running HTTP API: authenticated idempotent writes, point-in-
time nearest, errors naming the field (real NATS, PostgreSQL, embedded Chroma)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from hindsight.memory.app import Memory, build_memory, build_settings
from hindsight.memory.similarity import EMBED_DIM

pytestmark = pytest.mark.integration

TOKEN = "similarity-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = datetime(2024, 5, 1, tzinfo=UTC)


def _direction(x: float, y: float) -> list[float]:
    return [x, y] + [0.0] * (EMBED_DIM - 2)


def _item(signal_id: str, embed: list[float], quality: float, hours: int = 0) -> dict[str, Any]:
    return {
        "signal_id": signal_id,
        "symbol": "EURUSD",
        "timeframe": "1h",
        "ts": (BASE + timedelta(hours=hours)).isoformat(),
        "embed": embed,
        "pattern": "flag",
        "quality": quality,
        "pole_katr": 1.2,
        "model_version": "pattern-cnn-1",
    }


@pytest_asyncio.fixture
async def memory(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> AsyncIterator[tuple[Memory, httpx.AsyncClient]]:
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        data_dir=tmp_path / "data",
        image_roots=str(tmp_path),
        admin_token=TOKEN,
        http_port=0,
    )
    app = build_memory(settings)
    await app.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{app.http.port}", timeout=30.0
        ) as client:
            yield app, client
    finally:
        await app.stop()


async def test_put_embeds_then_nearest_over_http(
    memory: tuple[Memory, httpx.AsyncClient],
) -> None:
    app, client = memory
    body = {
        "embeds": [
            _item("a", _direction(1.0, 0.0), 0.9),
            _item("b", _direction(0.8, 0.6), 0.5),
            _item("c", _direction(0.0, 1.0), 0.3, hours=1),
        ]
    }
    refused = await client.put("/v1/patterns/embeds", json=body)
    assert refused.status_code == 401
    first = await client.put("/v1/patterns/embeds", json=body, headers=AUTH)
    assert first.status_code == 200, first.text
    assert first.json() == {"inserted": 3, "updated": 0, "unchanged": 0}
    again = await client.put("/v1/patterns/embeds", json=body, headers=AUTH)
    assert again.json() == {"inserted": 0, "updated": 0, "unchanged": 3}

    query = {"embed": _direction(1.0, 0.0), "k": 2, "as_of": (BASE + timedelta(days=1)).isoformat()}
    before = await client.post("/v1/patterns/nearest", json=query)
    assert before.status_code == 200, before.text
    assert before.json()["neighbours"] == []  # no outcome known yet
    for signal_id, r in (("a", 2.0), ("b", -1.0), ("c", 4.0)):
        assert await app.patterns.record_outcome(signal_id, r, BASE + timedelta(hours=3))
    answer = (await client.post("/v1/patterns/nearest", json=query)).json()
    assert [n["signal_id"] for n in answer["neighbours"]] == ["a", "b"]
    assert answer["sim_conf"] == pytest.approx(0.7 * 0.9, abs=1e-6)
    assert answer["hist_rr_pct"] == pytest.approx(-1.0 + 0.65 * 3.0, abs=1e-6)
    early = {**query, "as_of": (BASE + timedelta(hours=2)).isoformat()}
    assert (await client.post("/v1/patterns/nearest", json=early)).json()["neighbours"] == []

    by_window = {
        "k": 1,
        "symbol": "EURUSD",
        "timeframe": "1h",
        "end": BASE.isoformat(),
        "as_of": (BASE + timedelta(days=1)).isoformat(),
    }
    window = (await client.post("/v1/patterns/nearest", json=by_window)).json()
    assert [n["signal_id"] for n in window["neighbours"]] == ["b"]  # "a" is the query itself


async def test_bad_similarity_requests_name_the_field(
    memory: tuple[Memory, httpx.AsyncClient],
) -> None:
    _, client = memory
    zero = {"embeds": [_item("a", _direction(1.0, 0.0), 0.9), _item("z", [0.0] * EMBED_DIM, 0.5)]}
    answer = await client.put("/v1/patterns/embeds", json=zero, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["field"] == "embeds.1.embed"
    short = await client.post(
        "/v1/patterns/nearest", json={"embed": [1.0, 0.0], "as_of": BASE.isoformat()}
    )
    assert short.status_code == 400 and short.json()["field"] == "embed"
    naive = await client.post(
        "/v1/patterns/nearest", json={"embed": _direction(1, 0), "as_of": "2024-05-01T00:00:00"}
    )
    assert naive.status_code == 400 and naive.json()["field"] == "as_of"
    missing = await client.post(
        "/v1/patterns/nearest",
        json={"symbol": "EURUSD", "timeframe": "1h", "as_of": BASE.isoformat()},
    )
    assert missing.status_code == 404
