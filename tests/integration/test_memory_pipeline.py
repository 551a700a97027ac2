"""Issue 5's acceptance with the real services as processes: charts become memories.

1,000 chart PNGs (original + annotated, 10 run_ids) published as plain ``png.created``
events → the embedder (killed with SIGKILL mid-stream and restarted) → memory (Chroma +
PostgreSQL). Each PNG ends up as exactly one record, retrievable by run_id, with its
metadata and a thumbnail; publishing again adds nothing; bad input lands in the DLQ with
the reason; a text search through the embedder's CLIP text tower honours a filter and
``as_of``; ``label.saved`` reaches the trade's records.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from PIL import Image, ImageDraw

from hindsight.common.events import LabelSaved, PngCreated
from hindsight.common.record_ids import image_vector_id
from hindsight.devstack.testing import ServiceProcesses, get_json, wait_until

pytestmark = pytest.mark.integration

TOKEN = "memory-e2e-token"
RUNS = 10
TRADES_PER_RUN = 50  # x 2 images (original, annotated) x 10 runs = 1,000 PNGs
N_IMAGES = RUNS * TRADES_PER_RUN * 2


def _chart(path: Path, rng: random.Random, *, annotated: bool) -> None:
    """A small candlestick-like chart; the annotated copy has entry/stop/target lines."""
    image = Image.new("RGB", (240, 140), (16, 20, 28))
    draw = ImageDraw.Draw(image)
    price = 70.0
    for x in range(4, 236, 6):
        move = rng.uniform(-6, 6)
        top, bottom = sorted((price, price + move))
        draw.line([(x + 2, top - rng.uniform(0, 4)), (x + 2, bottom + rng.uniform(0, 4))], "gray")
        draw.rectangle(
            [x, top, x + 4, bottom + 1], fill=(34, 197, 94) if move < 0 else (239, 68, 68)
        )
        price = min(125.0, max(15.0, price + move))
    if annotated:
        for y, color in ((60, (59, 130, 246)), (85, (239, 68, 68)), (35, (34, 197, 94))):
            draw.line([(120, y), (236, y)], fill=color, width=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def _make_charts(root: Path) -> list[PngCreated]:
    rng = random.Random(5)
    events = []
    for run in range(RUNS):
        run_id = f"run-{run:02d}"
        for trade in range(TRADES_PER_RUN):
            trade_id = f"{run_id}-T{trade:03d}"
            for image_type in ("original", "annotated"):
                path = root / run_id / f"{trade_id}_{image_type}.png"
                _chart(path, rng, annotated=image_type == "annotated")
                events.append(
                    PngCreated.create(
                        source="chart-renderer",
                        file_path=str(path),
                        run_id=run_id,
                        trade_id=trade_id,
                        setup_id=f"setup-{trade % 3}",
                        rule_version="r1",
                        symbol="EURUSD" if run % 2 == 0 else "GOOG",
                        timeframe="1h",
                        image_type=image_type,
                        author="e2e",
                    )
                )
    return events


async def _publish(nats_url: str, events: list[Any], *, msg_id_prefix: str = "") -> int:
    """Publish with a plain NATS client, as an upstream tool would; returns duplicates seen."""
    client = await nats.connect(nats_url)
    duplicates = 0
    try:
        js = client.jetstream()
        for event in events:
            ack = await js.publish(
                event.subject,
                event.to_json_bytes(),
                headers={"Nats-Msg-Id": msg_id_prefix + event.message_id()},
            )
            duplicates += int(bool(ack.duplicate))
    finally:
        await client.close()
    return duplicates


def _image_records(memory: str) -> int:
    stats = get_json(f"{memory}/v1/collections") or {}
    return sum(p["records"] for p in stats.get("physical", []) if p["modality"] == "image")


async def _consumer_idle(nats_url: str, durable: str) -> bool:
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().consumer_info("HINDSIGHT", durable)
    finally:
        await client.close()
    return info.num_pending == 0 and info.num_ack_pending == 0


def _drained(nats_url: str) -> bool:
    from hindsight.memory.messaging import EMBEDDINGS_DURABLE

    return asyncio.run(_consumer_idle(nats_url, EMBEDDINGS_DURABLE))


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


@pytest.fixture(scope="module")
async def stack(
    nats_url: str, database_url: str, hindsight_test_dir: Path
) -> AsyncIterator[ServiceProcesses]:
    stack = await ServiceProcesses.fresh_platform(
        hindsight_test_dir / f"memory-e2e-{os.getpid()}",
        nats_url=nats_url,
        database_url=database_url,
        database="memory_e2e",
        admin_token=TOKEN,
        extra_env={
            # A small random-weights CLIP keeps 1,000 images quick on 2 cores; the
            # architecture is the embedder's, the pipeline is the same as with ViT-B-32.
            "HINDSIGHT_EMBEDDER_CLIP_ARCH": "hindsight-tiny-clip",
        },
    )
    try:
        stack.start("memory")
        stack.start("embedder", timeout=120)
        yield stack
    finally:
        stack.stop_all()


async def test_thousand_charts_become_exactly_a_thousand_memories(
    stack: ServiceProcesses, nats_url: str
) -> None:
    images = Path(stack.env["HINDSIGHT_IMAGE_ROOTS"])
    events = _make_charts(images / "charts")
    memory = stack.url("memory")

    # The first 600, then a crash of the embedder mid-stream, then the rest while it is down.
    assert await _publish(nats_url, events[:600]) == 0
    await wait_until(
        "memory to hold the first records",
        lambda: _image_records(memory) >= 150,
        timeout=120,
        services=stack,
    )
    stack.stop("embedder", sig=signal.SIGKILL)
    at_crash = _image_records(memory)
    assert at_crash < N_IMAGES
    assert await _publish(nats_url, events[600:]) == 0
    stack.start("embedder", timeout=120)
    await wait_until(
        f"all {N_IMAGES} records after the restart",
        lambda: _image_records(memory) >= N_IMAGES,
        timeout=300,
        services=stack,
    )
    print(f"\nembedder killed at {at_crash} records; after restart: {_image_records(memory)}")

    # Exactly one record per PNG, by run_id, with its metadata and a thumbnail.
    by_path = {e.file_path: e for e in events}
    seen: set[str] = set()
    for run in range(RUNS):
        run_id = f"run-{run:02d}"
        body = get_json(f"{memory}/v1/records?run_id={run_id}&collection=trade_cases")
        records = [r for r in body["records"] if r["metadata"]["type"] == "image"]
        assert len(records) == TRADES_PER_RUN * 2, run_id
        for record in records:
            meta = record["metadata"]
            event = by_path[meta["file_path"]]
            assert record["id"] == image_vector_id(event.file_path) == meta["id"]
            assert (meta["run_id"], meta["trade_id"], meta["image_type"]) == (
                run_id,
                event.trade_id,
                event.image_type,
            )
            assert meta["setup_id"] == event.setup_id and meta["rule_version"] == "r1"
            assert meta["source"] == "chart-renderer" and meta["timestamp"]
            thumb = Image.open(io.BytesIO(base64.b64decode(record["thumbnail_b64"])))
            assert thumb.format == "PNG" and max(thumb.size) <= 128
            seen.add(meta["file_path"])
    assert seen == set(by_path)

    # Publishing again adds nothing: JetStream drops keys it saw within its duplicate
    # window (2 min), and whatever slips past it (an older event, a producer without
    # dedup) is embedded again under the same vector id and upserted over the record.
    embedded_before = _metric(stack.url("embedder"), "hindsight_embedder_embeddings_total")
    dropped = await _publish(nats_url, events)
    assert await _publish(nats_url, events[:40], msg_id_prefix="again:") == 0
    expected = (len(events) - dropped) + 40
    print(f"republished: {dropped} dropped by JetStream, {expected} embedded again")
    await wait_until(
        f"the {expected} re-sent events to be embedded again",
        lambda: (
            _metric(stack.url("embedder"), "hindsight_embedder_embeddings_total")
            >= embedded_before + expected
        ),
        timeout=300,
        services=stack,
    )
    # Their embedding.created events share the first ones' keys (JetStream drops those
    # within its window); memory has settled when its consumer has nothing pending.
    await wait_until("memory's consumer to drain", lambda: _drained(nats_url), timeout=120)
    assert _image_records(memory) == N_IMAGES


async def test_bad_charts_go_to_the_dead_letter_stream_with_the_reason(
    stack: ServiceProcesses, nats_url: str
) -> None:
    images = Path(stack.env["HINDSIGHT_IMAGE_ROOTS"])
    not_png = images / "bad" / "notes.png"
    not_png.parent.mkdir(parents=True, exist_ok=True)
    not_png.write_text("this is not an image")
    cases = {
        "/etc/hostname": "outside",
        str(images / "bad" / "missing.png"): "does not exist",
        str(not_png): "PNG",
    }
    bad = [PngCreated.create(source="e2e", file_path=p, run_id="bad-run") for p in cases]
    await _publish(nats_url, bad)

    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        sub = await js.pull_subscribe("dlq.png.created", durable=None, stream="HINDSIGHT_DLQ")
        found: dict[str, str] = {}

        async def collect() -> bool:
            try:
                for msg in await sub.fetch(10, timeout=1.0):
                    body = PngCreated.model_validate_json(msg.data)
                    found[body.file_path] = " ".join(
                        v for k, v in (msg.headers or {}).items() if k.startswith("Hindsight-Error")
                    )
                    await msg.ack()
            except TimeoutError:
                pass
            return set(found) >= set(cases)

        await wait_until("three dead letters", collect, timeout=60, services=stack)
    finally:
        await client.close()
    for path, reason in cases.items():
        assert "file_path" in found[path], found[path]
        assert reason in found[path], found[path]
    records = get_json(f"{stack.url('memory')}/v1/records?run_id=bad-run")
    assert records["count"] == 0


async def test_text_search_with_filter_and_as_of_through_the_embedder(
    stack: ServiceProcesses,
) -> None:
    memory = stack.url("memory")
    now = datetime.now(UTC).isoformat()
    body = {
        "text": "breakout with the stop under the range",
        "filter": {"$and": [{"run_id": "run-03"}, {"image_type": "annotated"}]},
        "as_of": now,
        "k": 10,
    }
    response = httpx.post(f"{memory}/v1/search", json=body, timeout=30.0)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 10
    for hit in results:
        assert hit["metadata"]["run_id"] == "run-03"
        assert hit["metadata"]["image_type"] == "annotated"
        assert hit["metadata"]["timestamp"] < now
    # Nothing is older than a time before the charts existed.
    body["as_of"] = "2020-01-01T00:00:00Z"
    assert httpx.post(f"{memory}/v1/search", json=body, timeout=30.0).json()["results"] == []
    # A malformed filter is refused, naming it.
    bad = httpx.post(f"{memory}/v1/search", json={"text": "x", "filter": {"$gt": 3}}, timeout=30.0)
    assert bad.status_code == 400 and "filter" in bad.text


async def test_a_saved_label_reaches_the_trades_records(
    stack: ServiceProcesses, nats_url: str
) -> None:
    memory = stack.url("memory")
    label = LabelSaved.create(
        source="labeling",
        trade_id="run-07-T011",
        label="approved",
        labeler_id="alice",
        quality_grade="A",
    )
    await _publish(nats_url, [label])

    def labelled() -> bool:
        records = get_json(f"{memory}/v1/records?trade_id=run-07-T011")["records"]
        return len(records) == 2 and all(
            r["metadata"].get("user_label") == "approved"
            and r["metadata"].get("quality_grade") == "A"
            for r in records
        )

    await wait_until("the label on both charts of the trade", labelled, timeout=60)
