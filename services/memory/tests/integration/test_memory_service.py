"""The memory service in-process against real NATS JetStream, PostgreSQL and embedded Chroma.

The only fake is the embedder's side of ``embed.query``: a responder on the real NATS
that returns deterministic vectors (a fake at the I/O boundary).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from hindsight.common.events import EmbeddingCreated, LabelSaved, format_utc
from hindsight.memory.app import Memory, build_memory, build_settings
from hindsight.memory.cli import COMMAND

pytestmark = pytest.mark.integration

TOKEN = "memory-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLIP = "open_clip:ViT-B-32:random"
MINILM = "all-MiniLM-L6-v2"
DIMS = {CLIP: 512, MINILM: 384}
BASE_TIME = datetime(2024, 3, 1, tzinfo=UTC)
THUMB = base64.b64encode(b"\x89PNG\r\n\x1a\nthumbnail").decode()


def unit(seed: str, dim: int) -> list[float]:
    """A deterministic random unit vector."""
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16))
    v = rng.standard_normal(dim)
    return [float(x) for x in v / np.linalg.norm(v)]


def near(vector: list[float], seed: str, noise: float = 0.05) -> list[float]:
    """A unit vector close to ``vector``."""
    v = np.asarray(vector) + noise * np.asarray(unit(seed, len(vector)))
    return [float(x) for x in v / np.linalg.norm(v)]


def embedding(
    vid: str,
    *,
    run_id: str,
    trade_id: str | None = None,
    modality: str = "image",
    collection: str = "trade_cases",
    symbol: str = "EURUSD",
    hours: float = 0,
    document: str | None = None,
    vector: list[float] | None = None,
) -> EmbeddingCreated:
    model = CLIP if modality == "image" else MINILM
    return EmbeddingCreated.create(
        source="test-embedder",
        vector_id=vid,
        collection=collection,
        modality=modality,
        model=model,
        embedding=vector or unit(vid, DIMS[model]),
        metadata={
            "id": vid,
            "file_path": f"/charts/{vid}.png" if modality == "image" else "",
            "run_id": run_id,
            "trade_id": trade_id,
            "setup_id": None,
            "rule_version": "rules-1",
            "timestamp": format_utc(BASE_TIME + timedelta(hours=hours)),
            "type": modality,
            "source": "chart-renderer",
            "symbol": symbol,
            "embedding_model": model,
        },
        document=document,
        thumbnail_b64=THUMB if modality == "image" else None,
    )


async def publish(nats_client: NatsClient, event: Any, *, msg_id: str | None = None) -> None:
    js = nats_client.jetstream()
    await js.publish(
        event.subject, event.to_json_bytes(), headers={"Nats-Msg-Id": msg_id or event.message_id()}
    )


async def until(probe: Callable[[], Awaitable[Any]], *, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class FakeEmbedder:
    """Answers embed.query on the real NATS with deterministic vectors."""

    def __init__(self) -> None:
        self.fixed: dict[tuple[str, str], list[float]] = {}
        self.requests: list[dict[str, Any]] = []
        self.sub: Any = None

    async def start(self, nc: NatsClient) -> None:
        async def handler(msg: Msg) -> None:
            req = json.loads(msg.data)
            self.requests.append(req)
            tower = req["tower"]
            model = CLIP if tower == "clip" else MINILM
            key = req.get("text") or req.get("image_path") or ""
            if key == "make-an-error":
                body: dict[str, Any] = {"error": {"field": "text", "message": "too odd"}}
            else:
                vec = self.fixed.get((tower, key)) or unit(f"{tower}:{key}", DIMS[model])
                body = {"embedding": vec, "model": model}
            await msg.respond(json.dumps(body).encode())

        self.sub = await nc.subscribe("embed.query", cb=handler)
        await nc.flush()

    async def stop(self, nc: NatsClient) -> None:
        if self.sub is not None:
            await self.sub.unsubscribe()
            await nc.flush()
            self.sub = None


@pytest_asyncio.fixture
async def memory(
    nats_url: str,
    fresh_database: str,
    jetstream_reset: None,
    nats_client: NatsClient,
    tmp_path: Path,
) -> AsyncIterator[tuple[Memory, httpx.AsyncClient, FakeEmbedder]]:
    roots = tmp_path / "charts"
    roots.mkdir()
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        data_dir=tmp_path / "data",
        image_roots=str(roots),
        admin_token=TOKEN,
        http_port=0,
        embed_timeout_s=2.0,
        chunk_chars=300,
        chunk_overlap=40,
    )
    app = build_memory(settings)
    fake = FakeEmbedder()
    await fake.start(nats_client)
    await app.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{app.http.port}", timeout=30.0
        ) as client:
            yield app, client, fake
    finally:
        await app.stop()
        await fake.stop(nats_client)


async def records(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/records", params=params)
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["records"]
    return result


async def search(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/search", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def wait_for_count(client: httpx.AsyncClient, n: int, **params: Any) -> None:
    async def probe() -> bool:
        return len(await records(client, **params)) == n

    await until(probe, what=f"{n} records for {params}")


async def total(client: httpx.AsyncClient) -> dict[str, int]:
    body = (await client.get("/v1/collections")).json()
    return {c["name"]: c["records"] for c in body["collections"]}


# --- ingestion, idempotency, labels --------------------------------------------------------


async def test_records_are_stored_once_and_labels_reach_them(
    memory: tuple[Memory, httpx.AsyncClient, FakeEmbedder], nats_client: NatsClient
) -> None:
    app, client, _ = memory
    events = [
        embedding(f"img-{i}", run_id="run-a" if i < 12 else "run-b", trade_id=f"t{i % 4}", hours=i)
        for i in range(20)
    ]
    for event in events:
        await publish(nats_client, event)
    await wait_for_count(client, 12, run_id="run-a")
    await wait_for_count(client, 8, run_id="run-b")

    got = (await records(client, run_id="run-a"))[0]
    assert got["id"] == "img-0" and got["collection"] == "trade_cases"
    assert got["thumbnail_b64"] == THUMB
    meta = got["metadata"]
    assert meta["setup_id"] is None and meta["trade_id"] == "t0" and meta["symbol"] == "EURUSD"
    assert meta["timestamp"] == "2024-03-01T00:00:00Z" and meta["type"] == "image"
    assert {"user_label", "quality_grade"} <= set(meta)

    # The same events again under new message ids (JetStream stores them): nothing added.
    for event in events:
        await publish(nats_client, event, msg_id="again:" + event.vector_id)
    sentinel = embedding("img-sentinel", run_id="run-s")
    await publish(nats_client, sentinel)
    await wait_for_count(client, 1, run_id="run-s")
    assert len(await records(client, run_id="run-a")) == 12
    assert (await total(client))["trade_cases"] == 21
    physical = (await client.get("/v1/collections")).json()["physical"]
    assert [(p["name"], p["records"]) for p in physical] == [
        ("trade_cases__image__open-clip-vit-b-32-random", 21)
    ]
    assert await app.vectors.count("trade_cases__image__open-clip-vit-b-32-random") == 21

    # A label for t1, then an older one from the same labeler (ignored), then another
    # labeler's newer label (wins: the latest over all labelers).
    t = BASE_TIME + timedelta(days=10)
    first = LabelSaved.create(
        source="labeling",
        trade_id="t1",
        label="approved",
        labeler_id="ann",
        quality_grade="A",
        occurred_at=t,
    )
    older = LabelSaved.create(
        source="labeling",
        trade_id="t1",
        label="rejected",
        labeler_id="ann",
        quality_grade="D",
        occurred_at=t - timedelta(hours=1),
    )
    await publish(nats_client, first)
    await publish(nats_client, older)

    async def labelled() -> bool:
        rows = await records(client, trade_id="t1")
        return all(r["metadata"]["user_label"] == "approved" for r in rows)

    await until(labelled, what="labels on t1")
    await publish(nats_client, first, msg_id="again:label")  # redelivery: idempotent
    probe = embedding("img-probe", run_id="run-s2")
    await publish(nats_client, probe)
    await wait_for_count(client, 1, run_id="run-s2")
    rows = await records(client, trade_id="t1")
    assert len(rows) == 5
    assert {(r["metadata"]["user_label"], r["metadata"]["quality_grade"]) for r in rows} == {
        ("approved", "A")
    }
    # Chroma sees the label too: a labelled-only filter returns exactly t1's records.
    found = await search(
        client,
        {
            "vector": unit("img-5", 512),
            "model": CLIP,
            "k": 50,
            "filter": {"user_label": "approved"},
        },
    )
    assert sorted(r["id"] for r in found["results"]) == sorted(r["id"] for r in rows)
    assert all(r["metadata"]["quality_grade"] == "A" for r in found["results"])

    newer = LabelSaved.create(
        source="labeling",
        trade_id="t1",
        label="review",
        labeler_id="bob",
        occurred_at=t + timedelta(hours=1),
    )
    await publish(nats_client, newer)

    async def relabelled() -> bool:
        rows = await records(client, trade_id="t1")
        return all(r["metadata"]["user_label"] == "review" for r in rows)

    await until(relabelled, what="bob's label on t1")
    rows = await records(client, trade_id="t1")
    assert {r["metadata"]["quality_grade"] for r in rows} == {None}
    # A record that arrives after the label gets it at once.
    late = embedding("img-late", run_id="run-late", trade_id="t1")
    await publish(nats_client, late)
    await wait_for_count(client, 1, run_id="run-late")
    assert (await records(client, run_id="run-late"))[0]["metadata"]["user_label"] == "review"
    metrics = (await client.get("/metrics")).text
    assert 'hindsight_memory_records{collection="trade_cases"} 23.0' in metrics
    updates = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("hindsight_memory_label_updates_total ")
    ]
    assert updates and updates[0] >= 2  # process-wide counter: ann's and bob's at least


# --- search --------------------------------------------------------------------------------


async def test_text_search_filter_as_of_hybrid_and_bad_input(
    memory: tuple[Memory, httpx.AsyncClient, FakeEmbedder], nats_client: NatsClient
) -> None:
    app, client, fake = memory
    query_vec = unit("text-query", 384)
    fake.fixed[("text", "breakout above resistance")] = query_vec
    fake.fixed[("clip", "breakout above resistance")] = unit("clip-query", 512)
    events = []
    # Text records near the query: EURUSD ones at hours 0..5, GBPUSD ones, and the very
    # nearest EURUSD record dated after as_of.
    for i in range(6):
        events.append(
            embedding(
                f"doc-eur-{i}",
                run_id="r",
                modality="text",
                hours=i,
                document=f"EURUSD long setup number {i}",
                vector=near(query_vec, f"e{i}", 0.3),
            )
        )
    for i in range(4):
        events.append(
            embedding(
                f"doc-gbp-{i}",
                run_id="r",
                modality="text",
                symbol="GBPUSD",
                hours=i,
                document=f"GBPUSD setup {i}",
                vector=near(query_vec, f"g{i}", 0.1),
            )
        )
    events.append(
        embedding(
            "doc-eur-future",
            run_id="r",
            modality="text",
            hours=100,
            document="EURUSD future setup",
            vector=near(query_vec, "f", 0.01),
        )
    )
    # Far from the query vector, but the only record with the keyword.
    events.append(
        embedding(
            "doc-keyword",
            run_id="r",
            modality="text",
            hours=2,
            document="Zanzibar pattern: a rare wedge",
            vector=unit("far-away", 384),
        )
    )
    for i in range(10):
        events.append(embedding(f"img-{i}", run_id="r", hours=i))
    for event in events:
        await publish(nats_client, event)
    await wait_for_count(client, len(events), run_id="r")

    as_of = format_utc(BASE_TIME + timedelta(hours=50))
    body = {
        "text": "breakout above resistance",
        "filter": {"symbol": "EURUSD"},
        "as_of": as_of,
        "k": 20,
        "collections": ["trade_cases"],
    }
    result = await search(client, body)
    ids = [r["id"] for r in result["results"]]
    assert ids, "the query matches records"
    assert "doc-eur-future" not in ids
    assert not [i for i in ids if i.startswith("doc-gbp")]
    assert {f"doc-eur-{i}" for i in range(6)} <= set(ids)
    for r in result["results"]:
        assert r["metadata"]["symbol"] == "EURUSD"
        assert r["metadata"]["timestamp"] < as_of
        assert r["distance"] is not None
    # Both towers were asked (trade_cases holds images and texts), fused by rank.
    assert {req["tower"] for req in fake.requests} == {"clip", "text"}
    # Without as_of the newer, nearest record comes first among texts.
    texts_only = await search(
        client, {**body, "as_of": None, "filter": {"type": "text", "symbol": "EURUSD"}}
    )
    assert texts_only["results"][0]["id"] == "doc-eur-future"

    # Hybrid: a keyword-only match that vector search misses.
    fake.fixed[("text", "zanzibar")] = query_vec
    vector_only = await search(client, {"text": "zanzibar", "k": 5, "filter": {"type": "text"}})
    assert "doc-keyword" not in [r["id"] for r in vector_only["results"]]
    hybrid = await search(
        client, {"text": "zanzibar", "k": 5, "filter": {"type": "text"}, "hybrid": True}
    )
    hit = [r for r in hybrid["results"] if r["id"] == "doc-keyword"]
    assert hit and hit[0]["distance"] is None and hit[0]["document"].startswith("Zanzibar")
    # The filter also applies to keyword hits.
    filtered = await search(
        client, {"text": "zanzibar", "k": 5, "filter": {"symbol": "GBPUSD"}, "hybrid": True}
    )
    assert "doc-keyword" not in [r["id"] for r in filtered["results"]]

    # More like an existing record: itself excluded, its neighbours first.
    similar = await search(client, {"vector_id": "doc-gbp-0", "k": 3})
    assert "doc-gbp-0" not in [r["id"] for r in similar["results"]]
    assert len(similar["results"]) == 3

    # Bad input → 400 naming the field.
    for bad, field in [
        ({"text": "x", "filter": {"symbol": {"$regex": "EUR"}}}, "filter"),
        ({"text": "x", "filter": {"$and": "oops"}}, "filter"),
        ({"text": "x", "collections": ["secrets"]}, "collections"),
        ({"text": "x", "k": 500}, "k"),
        ({"vector": [0.1] * 10, "model": MINILM}, "vector"),
        ({"text": "make-an-error", "collections": ["trade_cases"]}, "text"),
        ({"image_path": "/etc/passwd"}, "image_path"),
    ]:
        response = await client.post("/v1/search", json=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["field"] == field, response.text
    response = await client.post(
        "/v1/search", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400

    # Embedder down: text search 503 with a clear message; vector searches still work.
    await fake.stop(nats_client)
    response = await client.post("/v1/search", json={"text": "breakout"})
    assert response.status_code == 503
    assert "embedder" in response.json()["message"]
    assert (await search(client, {"vector_id": "img-3", "k": 2}))["results"]
    metrics = (await client.get("/metrics")).text
    assert 'hindsight_memory_search_seconds_count{mode="hybrid"}' in metrics


def path_counts(metrics: str) -> dict[str, float]:
    """hindsight_memory_search_path_total by path, from a /metrics page."""
    out = {}
    for line in metrics.splitlines():
        if line.startswith("hindsight_memory_search_path_total{"):
            label, value = line.split("} ")
            out[label.split('"')[1]] = float(value)
    return out


async def test_filtered_search_same_answer_on_overfetch_and_fallback(
    memory: tuple[Memory, httpx.AsyncClient, FakeEmbedder], nats_client: NatsClient
) -> None:
    app, client, _ = memory
    symbols = ["EURUSD", "GBPUSD"]
    events = [
        embedding(
            f"of-{i:02d}",
            run_id="of",
            symbol="USDJPY" if i in (17, 43) else symbols[i % 2],
            hours=i,
        )
        for i in range(60)
    ]
    for event in events:
        await publish(nats_client, event)
    await wait_for_count(client, 60, run_id="of")
    query = unit("overfetch-query", 512)
    # The truth, computed here: ids by cosine distance to the query.
    by_distance = sorted(
        events, key=lambda e: 1.0 - float(np.dot(query, e.embedding))
    )  # unit vectors: cosine distance = 1 - dot

    async def run(body: dict[str, Any], overfetch: int) -> tuple[list[Any], dict[str, float]]:
        app.settings.search_overfetch = overfetch
        before = path_counts((await client.get("/metrics")).text)
        found = await search(client, {"vector": query, "model": CLIP, **body})
        after = path_counts((await client.get("/metrics")).text)
        served = {path: after[path] - before.get(path, 0) for path in after}
        ranked = [(r["id"], r["score"], r["distance"]) for r in found["results"]]
        return ranked, served

    as_of = format_utc(BASE_TIME + timedelta(hours=40))
    cases: list[tuple[dict[str, Any], set[str], int]] = [
        # (request, the symbols it selects, over-fetch factor giving a hit)
        ({"k": 5, "filter": {"symbol": "EURUSD"}}, {"EURUSD"}, 4),
        (
            {"k": 3, "filter": {"symbol": {"$in": ["GBPUSD", "USDJPY"]}}, "as_of": as_of},
            {"GBPUSD", "USDJPY"},
            8,
        ),
        (
            {"k": 3, "filter": {"$or": [{"symbol": "GBPUSD"}, {"run_id": {"$ne": "of"}}]}},
            {"GBPUSD"},
            6,
        ),
    ]
    for body, selected, factor in cases:
        # factor x k candidates of 60 records: a hit needs k matches among them.
        hit, hit_paths = await run(body, overfetch=factor)
        fallback, fallback_paths = await run(body, overfetch=0)
        assert hit_paths == {"unfiltered": 0, "overfetch": 1, "chroma_filter": 0}, body
        assert fallback_paths == {"unfiltered": 0, "overfetch": 0, "chroma_filter": 1}
        assert hit == fallback, body
        expected = [
            e.vector_id
            for e in by_distance
            if e.metadata["symbol"] in selected
            and ("as_of" not in body or e.metadata["timestamp"] < as_of)
        ]
        assert [vid for vid, _, _ in hit] == expected[: body["k"]], body

    # Two USDJPY records, k = 5: fewer than k match among the 20 candidates, so the
    # fallback answers, with exactly those two, nearest first.
    usdjpy = [e.vector_id for e in by_distance if e.metadata["symbol"] == "USDJPY"]
    assert sorted(usdjpy) == ["of-17", "of-43"]
    selective, paths = await run({"k": 5, "filter": {"symbol": "USDJPY"}}, overfetch=4)
    assert paths["chroma_filter"] == 1 and paths["overfetch"] == 0
    assert [vid for vid, _, _ in selective] == usdjpy
    # The same filter again: remembered as selective, it goes straight to the fallback.
    again, paths = await run({"k": 5, "filter": {"symbol": "USDJPY"}}, overfetch=20)
    assert paths["chroma_filter"] == 1 and again == selective
    # 100 candidates asked of 60 records (an equivalent filter, not remembered): Chroma
    # returned them all, so the over-fetch answer is complete although short.
    complete, paths = await run({"k": 5, "filter": {"symbol": {"$in": ["USDJPY"]}}}, overfetch=20)
    assert paths["overfetch"] == 1 and complete == selective
    # Unfiltered searches are counted apart.
    _, paths = await run({"k": 5}, overfetch=4)
    assert paths == {"unfiltered": 1, "overfetch": 0, "chroma_filter": 0}


# --- docs, prompts, retention ------------------------------------------------------------


async def test_docs_prompts_and_retention(
    memory: tuple[Memory, httpx.AsyncClient, FakeEmbedder], nats_client: NatsClient
) -> None:
    app, client, _ = memory
    paragraph = "Breakouts above the range high work best after a volatility squeeze. "
    markdown = "# Breakout theory\n\n" + paragraph * 12 + "\n\n## Pullbacks\n\n" + paragraph * 4
    files = {"file": ("breakouts.md", markdown.encode(), "text/markdown")}
    assert (await client.post("/v1/docs", files=files)).status_code == 401
    response = await client.post("/v1/docs", files=files, headers=AUTH)
    assert response.status_code == 201, response.text
    doc = response.json()
    assert doc["chunks"] > 2 and doc["model"] == MINILM
    found = await search(
        client, {"text": "volatility squeeze", "collections": ["theory_docs"], "hybrid": True}
    )
    assert found["results"] and all(r["collection"] == "theory_docs" for r in found["results"])
    assert found["results"][0]["metadata"]["title"] == "breakouts.md"
    # Re-upload of a shorter version replaces the chunks.
    response = await client.post(
        "/v1/docs", data={"text": paragraph, "title": "breakouts.md"}, headers=AUTH
    )
    assert response.json()["chunks"] == 1
    assert response.json()["removed_stale_chunks"] == doc["chunks"] - 1
    assert (await total(client))["theory_docs"] == 1
    bad = await client.post(
        "/v1/docs",
        files={"file": ("x.pdf", b"%PDF-1.4 garbage", "application/pdf")},
        headers=AUTH,
    )
    assert bad.status_code == 400 and bad.json()["field"] == "file"

    prompt = {
        "prompt": "Is this EURUSD breakout good?",
        "response": "Yes, grade B.",
        "llm_model": "stand-in/1",
        "trade_id": "t9",
    }
    response = await client.post("/v1/prompts", json=prompt, headers=AUTH)
    assert response.status_code == 201, response.text
    listed = (await client.get("/v1/prompts", params={"trade_id": "t9"})).json()["prompts"]
    assert len(listed) == 1 and "EURUSD breakout" in listed[0]["document"]
    assert (await client.post("/v1/prompts", json={"prompt": "x"}, headers=AUTH)).json()[
        "field"
    ] == "response"

    # Retention ages records by ingestion time, not event time: records of 2024 trades
    # stored just now stay; 31 days later everything stored now is archived.
    now = datetime.now(UTC)
    old = [embedding(f"old-{i}", run_id="ret", hours=0) for i in range(3)]
    fresh = embedding("fresh", run_id="ret", hours=0)
    fresh.metadata["timestamp"] = format_utc(now - timedelta(days=1))
    for event in [*old, fresh]:
        await publish(nats_client, event)
    await wait_for_count(client, 4, run_id="ret")
    app.settings.retention_days = 30
    assert (await client.post("/v1/retention/run")).status_code == 401
    result = (await client.post("/v1/retention/run", headers=AUTH)).json()
    assert result["archived"] == 0
    result = await app.retention.run(now=now + timedelta(days=31))
    # The three old images, the fresh one, the theory doc and the prompt.
    assert result.archived == 6
    assert await records(client, run_id="ret") == []
    archived = await records(client, run_id="ret", include_archived="true")
    assert sum(r["archived"] for r in archived) == 4
    hits = await search(client, {"vector": unit("old-1", 512), "model": CLIP, "k": 10})
    assert "old-1" not in [r["id"] for r in hits["results"]]
    restored = await client.post(
        "/v1/retention/restore", json={"vector_ids": ["old-1"]}, headers=AUTH
    )
    assert restored.json() == {"restored": 1}
    hits = await search(client, {"vector": unit("old-1", 512), "model": CLIP, "k": 1})
    assert hits["results"][0]["id"] == "old-1"
    assert hits["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    # Restored with its ingestion time: still found by ingested_before.
    ingested = hits["results"][0]["metadata"]["ingested_at"]
    later = format_utc(now + timedelta(hours=1))
    again = await search(
        client, {"vector": unit("old-1", 512), "model": CLIP, "k": 1, "ingested_before": later}
    )
    assert [r["id"] for r in again["results"]] == ["old-1"]
    assert again["results"][0]["metadata"]["ingested_at"] == ingested
    app.settings.retention_mode = "delete"
    result = await app.retention.run(now=now + timedelta(days=31))
    assert result.deleted == 6  # the restored one and the five still archived
    assert await records(client, run_id="ret", include_archived="true") == []


# --- point in time: event time vs ingestion time -------------------------------------------


async def test_as_of_is_event_time_and_ingested_before_is_ingestion_time(
    memory: tuple[Memory, httpx.AsyncClient, FakeEmbedder], nats_client: NatsClient
) -> None:
    _, client, fake = memory
    query_vec = unit("pit-query", 384)
    fake.fixed[("text", "pitword")] = query_vec
    started = datetime.now(UTC)
    # A backtest stores today trades of 2017 and 2018 (event times), nearest first.
    dated = {
        "pit-jan": "2017-01-15T10:00:00Z",
        "pit-may": "2017-05-31T23:00:00Z",
        "pit-jun": "2017-06-01T00:00:00Z",  # exactly as_of: not strictly earlier
        "pit-aug": "2017-08-01T00:00:00Z",
        "pit-2018": "2018-02-01T00:00:00Z",
    }
    events = []
    for i, (vid, ts) in enumerate(dated.items()):
        event = embedding(
            vid,
            run_id="pit",
            trade_id=f"pit-t{i}",
            modality="text",
            document=f"pitword trade {vid}",
            vector=near(query_vec, vid, 0.05 * (i + 1)),
        )
        event.metadata["timestamp"] = ts
        events.append(event)
    for event in events:
        await publish(nats_client, event)
    await wait_for_count(client, len(events), run_id="pit")
    for row in await records(client, run_id="pit"):
        assert row["metadata"]["timestamp"] == dated[row["id"]]
        ingested = datetime.fromisoformat(row["metadata"]["ingested_at"])
        assert ingested >= started - timedelta(seconds=5)  # now-ish, not 2017

    base = {"text": "pitword", "k": 10, "filter": {"run_id": "pit"}}
    for hybrid in (False, True):
        body = {**base, "hybrid": hybrid}
        found = await search(client, {**body, "as_of": "2017-06-01T00:00:00Z"})
        assert {r["id"] for r in found["results"]} == {"pit-jan", "pit-may"}, hybrid
        found = await search(client, {**body, "as_of": "2017-12-31T00:00:00Z"})
        assert {r["id"] for r in found["results"]} == set(dated) - {"pit-2018"}, hybrid
        # Ingestion time: all were stored now, so none before an hour ago, all before later.
        hour_ago = format_utc(started - timedelta(hours=1))
        assert (await search(client, {**body, "ingested_before": hour_ago}))["results"] == []
        soon = format_utc(datetime.now(UTC) + timedelta(hours=1))
        found = await search(
            client, {**body, "ingested_before": soon, "as_of": "2017-06-01T00:00:00Z"}
        )
        assert {r["id"] for r in found["results"]} == {"pit-jan", "pit-may"}, hybrid

    # A label and a redelivery under a new message id keep the first ingestion time.
    before = {r["id"]: r["metadata"]["ingested_at"] for r in await records(client, run_id="pit")}
    label = LabelSaved.create(
        source="labeling", trade_id="pit-t0", label="approved", labeler_id="ann"
    )
    await publish(nats_client, label)
    await publish(nats_client, events[1], msg_id="again:pit-may")

    async def labelled() -> bool:
        rows = {r["id"]: r for r in await records(client, run_id="pit")}
        return rows["pit-jan"]["metadata"]["user_label"] == "approved"

    await until(labelled, what="the label on pit-jan")
    sentinel = embedding("pit-sentinel", run_id="pit-s")
    await publish(nats_client, sentinel)
    await wait_for_count(client, 1, run_id="pit-s")  # the redelivery was applied before it
    after = {r["id"]: r["metadata"]["ingested_at"] for r in await records(client, run_id="pit")}
    assert after == before
    soon = format_utc(datetime.now(UTC) + timedelta(hours=1))
    found = await search(client, {**base, "ingested_before": soon, "as_of": "2017-06-01T00:00:00Z"})
    assert {r["id"] for r in found["results"]} == {"pit-jan", "pit-may"}
    # Bad input names the field.
    response = await client.post("/v1/search", json={**base, "ingested_before": "yesterday"})
    assert response.status_code == 400 and response.json()["field"] == "ingested_before"


# --- backup / restore --------------------------------------------------------------------


async def test_backup_wipe_restore_gives_identical_counts_and_search(
    memory: tuple[Memory, httpx.AsyncClient, FakeEmbedder],
    nats_client: NatsClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, client, _ = memory
    events = [embedding(f"img-{i}", run_id="b", trade_id=f"t{i % 3}", hours=i) for i in range(25)]
    events += [
        embedding(f"doc-{i}", run_id="b", modality="text", hours=i, document=f"note {i}")
        for i in range(7)
    ]
    events += [
        embedding(
            f"th-{i}", run_id="b", modality="text", collection="theory_docs", document=f"t {i}"
        )
        for i in range(3)
    ]
    for event in events:
        await publish(nats_client, event)
    await publish(
        nats_client,
        LabelSaved.create(source="labeling", trade_id="t2", label="approved", labeler_id="a"),
    )
    await wait_for_count(client, 35, run_id="b")

    async def labelled() -> bool:
        return all(r["metadata"]["user_label"] for r in await records(client, trade_id="t2"))

    await until(labelled, what="label")
    queries = [
        {"vector": unit("q1", 512), "model": CLIP, "k": 5},
        {
            "vector": unit("q2", 384),
            "model": MINILM,
            "k": 4,
            "collections": ["trade_cases", "theory_docs"],
        },
        {"vector_id": "img-3", "k": 3, "filter": {"user_label": "approved"}},
    ]
    before = [await search(client, q) for q in queries]
    before_counts = (await client.get("/v1/collections")).json()

    # Backup through the CLI (it talks to the service's admin API).
    archive = tmp_path / "memory.tar.gz"
    monkeypatch.setenv("HINDSIGHT_MEMORY_URL", str(client.base_url))
    monkeypatch.setenv("HINDSIGHT_ADMIN_TOKEN", TOKEN)
    parser = __import__("argparse").ArgumentParser()
    COMMAND.add_arguments(parser)  # type: ignore[misc]
    code = await asyncio.to_thread(
        COMMAND.handler, parser.parse_args(["backup", "--out", str(archive)])
    )
    assert code == 0 and archive.stat().st_size > 0

    # Wipe both stores.
    await app.storage.wipe()
    await app.vectors.drop_all()
    assert (await total(client))["trade_cases"] == 0
    assert app.vectors.physical() == []

    code = await asyncio.to_thread(COMMAND.handler, parser.parse_args(["restore", str(archive)]))
    assert code == 0
    assert (await client.get("/v1/collections")).json() == before_counts
    after = [await search(client, q) for q in queries]
    for b, a in zip(before, after, strict=True):
        assert [(r["id"], r["score"], r["metadata"]) for r in a["results"]] == [
            (r["id"], r["score"], r["metadata"]) for r in b["results"]
        ]
    # Labels came back too: a new record of t2 is labelled at once.
    await publish(nats_client, embedding("img-new", run_id="b2", trade_id="t2"))
    await wait_for_count(client, 1, run_id="b2")
    assert (await records(client, run_id="b2"))[0]["metadata"]["user_label"] == "approved"

    # A damaged archive is refused before anything is wiped.
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[:200])
    response = await client.post("/v1/restore", content=broken.read_bytes(), headers=AUTH)
    assert response.status_code == 400 and response.json()["field"] == "backup"
    assert (await total(client))["trade_cases"] == before_counts["collections"][0]["records"] + 1
