"""The embedder in-process against a real nats-server: images, texts, DLQ, embed.query.

Models: the registered ``hindsight-tiny-clip`` with random weights (64-d) and the real
all-MiniLM-L6-v2, loaded once for the module.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from PIL import Image

from hindsight.common.broker import DLQ_STREAM, STREAM
from hindsight.common.events import JsonCreated, PngCreated, format_utc
from hindsight.common.metrics import EVENTS_PUBLISHED
from hindsight.common.record_ids import doc_vector_id, image_vector_id
from hindsight.embedder.app import Embedder, build_settings, load_models
from hindsight.embedder.models import TINY_CLIP_ARCH, Models

pytestmark = pytest.mark.integration

N_IMAGES = 50
CLIP_NAME = f"open_clip:{TINY_CLIP_ARCH}:random"


@pytest.fixture(scope="module")
def models() -> Models:
    settings = build_settings(
        clip_arch=TINY_CLIP_ARCH, allow_random_weights=True, device="cpu", torch_threads=2
    )
    return load_models(settings)


@pytest.fixture
async def embedder(
    nats_url: str, jetstream_reset: None, models: Models, tmp_path: Path
) -> AsyncIterator[Embedder]:
    root = tmp_path / "charts"
    root.mkdir()
    settings = build_settings(
        nats_url=nats_url,
        image_roots=[root],
        http_port=0,
        batch_size=8,
        batch_timeout_ms=20,
        max_deliveries=3,
        clip_arch=TINY_CLIP_ARCH,
        allow_random_weights=True,
    )
    service = Embedder(settings, models=models)
    await service.start()
    yield service
    await service.stop()


def _root(embedder: Embedder) -> Path:
    return embedder.settings.image_roots[0]


async def _publish(js: Any, event: PngCreated | JsonCreated, *, msg_id: str | None = None) -> Any:
    return await js.publish(
        event.subject, event.to_json_bytes(), headers={"Nats-Msg-Id": msg_id or event.message_id()}
    )


async def _drain(
    nc: NatsClient, subject: str, *, stream: str = STREAM, expected: int, settle: float = 0.0
) -> list[Any]:
    """Every message on ``subject`` (from the start) once ``expected`` arrived (+ settle)."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
    )
    got: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 45
    while loop.time() < deadline and len(got) < expected:
        try:
            got += await sub.fetch(64, timeout=0.5)
        except TimeoutError:
            continue
    if settle:
        end = loop.time() + settle
        while loop.time() < end:
            try:
                got += await sub.fetch(64, timeout=0.3)
            except TimeoutError:
                continue
    await sub.unsubscribe()
    return got


async def test_pngs_become_one_embedding_each_and_republishing_adds_none(
    embedder: Embedder, nats_client: NatsClient, png_writer: Callable[..., Path]
) -> None:
    js = nats_client.jetstream()
    root = _root(embedder)
    events = [
        PngCreated.create(
            source="chart-renderer",
            file_path=str(png_writer(root / f"run-{i % 5}" / f"chart-{i:03d}.png", seed=i)),
            run_id=f"run-{i % 5}",
            trade_id=f"t-{i}",
            setup_id="breakout",
            rule_version="r3",
            symbol="EURUSD",
            timeframe="1h",
            image_type="annotated" if i % 2 else "original",
            author="renderer-1",
        )
        for i in range(N_IMAGES)
    ]
    for event in events:
        await _publish(js, event)
    messages = await _drain(nats_client, "embedding.created", expected=N_IMAGES, settle=1.0)
    assert len(messages) == N_IMAGES
    records = {json.loads(m.data)["vector_id"]: json.loads(m.data) for m in messages}
    assert len(records) == N_IMAGES

    for event in events:
        record = records[image_vector_id(event.file_path)]
        assert record["collection"] == "trade_cases"
        assert record["modality"] == "image"
        assert record["model"] == CLIP_NAME
        assert len(record["embedding"]) == 64
        assert np.linalg.norm(record["embedding"]) == pytest.approx(1.0, abs=1e-5)
        meta = record["metadata"]
        assert meta == {
            "id": record["vector_id"],
            "file_path": event.file_path,
            "run_id": event.run_id,
            "trade_id": event.trade_id,
            "setup_id": "breakout",
            "rule_version": "r3",
            "timestamp": format_utc(event.occurred_at),
            "type": "image",
            "source": "chart-renderer",
            "image_type": event.image_type,
            "symbol": "EURUSD",
            "timeframe": "1h",
            "author": "renderer-1",
            "embedding_model": CLIP_NAME,
            "random_weights": True,
        }
        thumb = Image.open(io.BytesIO(base64.b64decode(record["thumbnail_b64"])))
        assert thumb.format == "PNG" and max(thumb.size) == 128  # 320x200 → 128x80
    # Different charts, different vectors (random weights, but a real forward pass).
    vectors = np.array([r["embedding"] for r in records.values()])
    assert len({v.tobytes() for v in vectors.round(5)}) == N_IMAGES

    # Same events again: JetStream drops them (same Nats-Msg-Id) ...
    acks = [await _publish(js, event) for event in events[:10]]
    assert all(ack.duplicate for ack in acks)
    # ... and one slipping past the window (another msg id) is re-embedded under the same
    # deterministic vector id, which JetStream drops as a duplicate embedding.created.
    dropped = EVENTS_PUBLISHED.labels("embedding.created", "true")
    dropped_before = dropped._value.get()
    forced = await _publish(js, events[0], msg_id="png.created:forced-redelivery")
    assert not forced.duplicate
    for _ in range(200):  # the embedder publishes before it acks: wait for the ack
        info = await js.consumer_info(STREAM, "embedder_png")
        if info.ack_floor.stream_seq >= forced.seq:
            break
        await asyncio.sleep(0.05)
    assert info.ack_floor.stream_seq >= forced.seq and info.num_ack_pending == 0
    assert dropped._value.get() == dropped_before + 1, "re-embedded, dropped as a duplicate"
    again = await _drain(nats_client, "embedding.created", expected=N_IMAGES, settle=0.5)
    assert len(again) == N_IMAGES


async def test_bad_images_are_dead_lettered_with_the_reason(
    embedder: Embedder, nats_client: NatsClient, tmp_path: Path, png_writer: Callable[..., Path]
) -> None:
    js = nats_client.jetstream()
    root = _root(embedder)
    outside = png_writer(tmp_path / "elsewhere" / "x.png", seed=1)
    not_png = root / "notes.png"
    not_png.write_text("this is not an image")
    cases = {
        str(outside): "outside the allowed roots",
        str(root / "missing.png"): "does not exist",
        str(not_png): "not a PNG file",
    }
    for path in cases:
        await _publish(js, PngCreated.create(source="t", file_path=path, run_id="run-bad"))
    dead = await _drain(nats_client, "dlq.png.created", stream=DLQ_STREAM, expected=len(cases))
    assert len(dead) == len(cases)
    for msg in dead:
        path = json.loads(msg.data)["file_path"]
        error = msg.headers["Hindsight-Error"]
        assert error.startswith("file_path: "), error
        assert path in error and cases[path] in error, error
        assert msg.headers["Hindsight-Error-Type"] == "InvalidInputError"
        assert msg.headers["Hindsight-Delivery-Count"] == "1"
        assert msg.headers["Hindsight-Consumer"] == "embedder_png"
    stored = await js.stream_info(STREAM, subjects_filter="embedding.created")
    assert not stored.state.subjects, "no embedding for bad input"


async def test_json_documents_become_text_embeddings(
    embedder: Embedder, nats_client: NatsClient
) -> None:
    js = nats_client.jetstream()
    trade = JsonCreated.create(
        source="replay-feeder",
        doc_type="trade_meta",
        doc_id="trade_meta:t-1:closed",
        run_id="run-1",
        trade_id="t-1",
        key_fields=["setup", "result"],
        payload={
            "trade_id": "t-1",
            "symbol": "EURUSD",
            "timeframe": "1h",
            "side": "buy",
            "entry": 1.1,
            "sl": 1.095,
            "tp": 1.11,
            "atr": 0.004,
            "result": "win",
            "setup": "breakout",
        },
    )
    theory = JsonCreated.create(
        source="docs",
        doc_type="theory",
        run_id="library",
        payload={"title": "Breakouts", "text": "A breakout retest is a second chance."},
    )
    await _publish(js, trade)
    await _publish(js, theory)
    messages = await _drain(nats_client, "embedding.created", expected=2)
    records = {json.loads(m.data)["vector_id"]: json.loads(m.data) for m in messages}
    one = records[doc_vector_id("trade_meta:t-1:closed")]
    assert one["collection"] == "trade_cases" and one["modality"] == "text"
    assert one["model"] == "all-MiniLM-L6-v2" and len(one["embedding"]) == 384
    assert np.linalg.norm(one["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert one["document"].splitlines()[:3] == ["trade_meta", "setup: breakout", "result: win"]
    assert "sl: -1.25 ATR (-0.45% from entry)" in one["document"]
    meta = one["metadata"]
    assert meta["type"] == "text" and meta["file_path"] == "" and meta["doc_type"] == "trade_meta"
    assert meta["trade_id"] == "t-1" and meta["symbol"] == "EURUSD" and meta["run_id"] == "run-1"
    two = records[doc_vector_id(theory.idempotency_key())]
    assert two["collection"] == "theory_docs"
    assert "text: A breakout retest is a second chance." in two["document"]


async def test_embed_query_answers_both_towers_and_images(
    embedder: Embedder, nats_client: NatsClient, png_writer: Callable[..., Path]
) -> None:
    async def ask(body: dict[str, Any]) -> dict[str, Any]:
        reply = await nats_client.request("embed.query", json.dumps(body).encode(), timeout=10)
        return json.loads(reply.data)  # type: ignore[no-any-return]

    clip = await ask({"text": "bullish breakout above resistance", "tower": "clip"})
    assert clip["model"] == CLIP_NAME and len(clip["embedding"]) == 64
    text = await ask({"text": "bullish breakout above resistance", "tower": "text"})
    assert text["model"] == "all-MiniLM-L6-v2" and len(text["embedding"]) == 384
    assert np.linalg.norm(text["embedding"]) == pytest.approx(1.0, abs=1e-5)
    near = await ask({"text": "breakout over resistance, bullish", "tower": "text"})
    far = await ask({"text": "quarterly tax filing deadline", "tower": "text"})
    assert np.dot(text["embedding"], near["embedding"]) > np.dot(
        text["embedding"], far["embedding"]
    )

    path = png_writer(_root(embedder) / "q.png", seed=7)
    image = await ask({"image_path": str(path), "tower": "clip"})
    assert image["model"] == CLIP_NAME and len(image["embedding"]) == 64
    # The query vector of an image is the vector its png.created gets.
    js = nats_client.jetstream()
    await _publish(js, PngCreated.create(source="t", file_path=str(path), run_id="run-q"))
    [stored] = await _drain(nats_client, "embedding.created", expected=1)
    assert np.allclose(json.loads(stored.data)["embedding"], image["embedding"], atol=1e-5)

    outside = await ask({"image_path": "/etc/passwd", "tower": "clip"})
    assert outside["error"]["field"] == "image_path"
    assert "outside the allowed roots" in outside["error"]["message"]
    bad_tower = await ask({"text": "x", "tower": "audio"})
    assert bad_tower["error"]["field"] == "tower"
    both = await ask({"text": "x", "image_path": str(path)})
    assert both["error"]["field"] == "text"


async def test_http_health_readiness_and_metrics(
    embedder: Embedder, nats_client: NatsClient, png_writer: Callable[..., Path]
) -> None:
    path = png_writer(_root(embedder) / "m.png", seed=3)
    await _publish(
        nats_client.jetstream(), PngCreated.create(source="t", file_path=str(path), run_id="r")
    )
    await _drain(nats_client, "embedding.created", expected=1)
    base = f"http://127.0.0.1:{embedder.http.port}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"models": "ok", "nats": "ok"}
        info = (await client.get("/v1/info")).json()
        assert info["clip_model"] == CLIP_NAME and info["random_weights"] is True
        metrics = (await client.get("/metrics")).text
    for name in (
        'hindsight_embedder_embeddings_total{collection="trade_cases",modality="image"}',
        "hindsight_embedder_batch_size_count",
        'hindsight_embedder_embed_seconds_count{modality="image"}',
        'hindsight_embedder_lag_seconds_count{modality="image"}',
    ):
        assert name in metrics, name


async def test_without_weights_the_service_refuses_to_start(nats_url: str) -> None:
    from hindsight.common.errors import ConfigurationError

    settings = build_settings(nats_url=nats_url, http_port=0, clip_arch=TINY_CLIP_ARCH)
    service = Embedder(settings)
    with pytest.raises(ConfigurationError, match="ALLOW_RANDOM_WEIGHTS"):
        await service.start()
