"""The labeling service in-process against real NATS JetStream and PostgreSQL (no mocks)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from hindsight.common.broker import DLQ_STREAM
from hindsight.common.events import JsonCreated, LabelSaved, PngCreated
from hindsight.common.http import HttpServer
from hindsight.common.record_ids import image_vector_id
from hindsight.labeling.service import UNDO_COMMENT

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-password"
EVENT_FIELDS = (
    "trade_id",
    "label",
    "labeler_id",
    "quality_grade",
    "user_comment",
    "llm_agreed",
    "screenshot",
    "chroma_vector_id",
)


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            if line.startswith(name + " ") or name.endswith("}"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not found")


def _matches(event: dict[str, Any], file: dict[str, Any], row: dict[str, Any]) -> None:
    """One label: the event, the file and the row say the same thing."""
    for key in EVENT_FIELDS:
        assert event.get(key) == file[key], key
        assert row[key] == file[key], key
    assert event["occurred_at"] == file["timestamp"]
    assert row["occurred_at"].isoformat().replace("+00:00", "Z") == file["timestamp"]


async def test_queue_built_from_png_and_json_events(harness: Any) -> None:
    await harness.add_trade(1, suggestion="rejected")
    await harness.add_trade(2, suggestion=None, closed=False, images=False)
    # An open trade_meta arriving after the closed one must not replace it.
    late_open = JsonCreated.create(
        source="replay",
        doc_type="trade_meta",
        payload={"trade_id": "T0001", "symbol": "GBPUSD", "result": None, "closed_at": None},
        run_id="run-1",
        trade_id="T0001",
        doc_id="trade_meta:T0001:open-again",
    )
    await harness.publish(late_open)
    # Not ours: quietly acked, no item.
    await harness.publish(
        JsonCreated.create(source="t", doc_type="theory", payload={"text": "x"}, run_id="r")
    )
    # A path outside the image roots is bad input: dead-lettered, never queued.
    outside = PngCreated.create(
        source="t", file_path="/etc/passwd", run_id="run-1", trade_id="EVIL", image_type="original"
    )
    await harness.publish(outside)
    await harness.wait_items(1)
    await harness.wait_items(2, complete=False)

    js = harness.nats.jetstream()

    async def dead_lettered() -> Any:
        try:
            return await js.get_last_msg(DLQ_STREAM, "dlq.png.created")
        except Exception:
            return None

    dlq = await harness.wait_for(dead_lettered, what="dead letter")
    assert "outside the allowed roots" in dlq.headers["Hindsight-Error"]
    await harness.add_labeler("alice", PASSWORD)
    async with httpx.AsyncClient(timeout=10) as client:
        await harness.login(client, "alice", PASSWORD)
        got = await client.get(f"{harness.base_url}/api/items/T0001")
        assert got.status_code == 200, got.text
        item = got.json()
        assert item["trade_state"] == "closed"
        assert item["trade"]["result"] in ("win", "loss")
        assert item["trade"]["entry"] == pytest.approx(1.081)
        assert item["suggestion"]["label"] == "rejected"
        assert item["suggestion"]["model"] == "rule-based-stand-in/1"
        assert item["has_original"] and item["has_annotated"]
        original = str(harness.images / "T0001_original.png")
        assert item["vector_id"] == image_vector_id(original)
        assert item["status"] == "unlabeled" and item["symbol"] == "GBPUSD"
        other = (await client.get(f"{harness.base_url}/api/items/T0002")).json()
        assert other["trade_state"] == "open" and other["suggestion"] is None
        assert (await client.get(f"{harness.base_url}/api/items/EVIL")).status_code == 404
        listing = (await client.get(f"{harness.base_url}/api/items")).json()
        assert [i["trade_id"] for i in listing["items"]] == ["T0001", "T0002"]
        assert listing["counts"]["total"] == 2
        # Images are served from the roots by trade id, never by a path parameter.
        png = await client.get(f"{harness.base_url}/images/T0001/annotated")
        assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        bad = await client.get(f"{harness.base_url}/images/T0001/..%2F..%2Fetc%2Fpasswd")
        assert bad.status_code in (404, 422)
        assert (await client.get(f"{harness.base_url}/images/T0002/original")).status_code == 404
        # The grid page shows the trades with lazily loaded previews.
        page = (await client.get(f"{harness.base_url}/")).text
        assert page.count('loading="lazy"') == 1 and "T0002" in page
        filtered = (await client.get(f"{harness.base_url}/api/items?symbol=BTCUSD")).json()
        assert [i["trade_id"] for i in filtered["items"]] == ["T0002"]
        in_may = await client.get(
            f"{harness.base_url}/api/items?date_from=2024-05-01&date_to=2024-05-01"
        )
        assert {i["trade_id"] for i in in_may.json()["items"]} == {"T0001", "T0002"}
        june = await client.get(f"{harness.base_url}/api/items?date_from=2024-06-01")
        assert june.json()["items"] == []


async def test_auth_csrf_forged_labeler_and_unknown_trade(harness: Any) -> None:
    trade = await harness.add_trade(3, suggestion="approved")
    await harness.wait_items(1)
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    async with httpx.AsyncClient(timeout=10) as anon:
        body = {"trade_id": trade, "label": "approved"}
        assert (await anon.post(f"{url}/api/labels", json=body)).status_code == 401
        assert (await anon.get(f"{url}/api/items")).status_code == 401
        assert (await anon.get(f"{url}/api/export.csv")).status_code == 401
        assert (await anon.get(f"{url}/images/{trade}/original")).status_code == 401
        page = await anon.get(f"{url}/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        wrong = await harness.post_login(anon, "alice", "nope")
        assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
        ghost = await harness.post_login(anon, "ghost", "x")
        assert ghost.status_code == 401
        # A cookie that is no session is no session.
        anon.cookies.set("hindsight_session", "forged")
        assert (await anon.post(f"{url}/api/labels", json=body)).status_code == 401

    async with httpx.AsyncClient(timeout=10) as client:
        login = await harness.post_login(client, "alice", PASSWORD)
        (cookie,) = [
            c.lower()
            for c in login.headers.get_list("set-cookie")
            if c.startswith("hindsight_session=")
        ]
        assert "httponly" in cookie and "samesite=strict" in cookie
        csrf = await harness.login(client, "alice", PASSWORD)
        no_csrf = await client.post(
            f"{url}/api/labels", json={"trade_id": trade, "label": "rejected"}
        )
        assert no_csrf.status_code == 403
        wrong_csrf = await client.post(
            f"{url}/api/labels",
            json={"trade_id": trade, "label": "rejected"},
            headers={"X-CSRF-Token": "guess"},
        )
        assert wrong_csrf.status_code == 403
        assert harness.label_files() == {}
        headers = {"X-CSRF-Token": csrf}
        unknown = await client.post(
            f"{url}/api/labels", json={"trade_id": "NOPE", "label": "approved"}, headers=headers
        )
        assert unknown.status_code == 404
        bad_label = await client.post(
            f"{url}/api/labels", json={"trade_id": trade, "label": "maybe"}, headers=headers
        )
        assert bad_label.status_code == 422
        forged = await client.post(
            f"{url}/api/labels",
            json={
                "trade_id": trade,
                "label": "rejected",
                "labeler_id": "mallory",
                "quality_grade": "B",
                "user_comment": "late entry",
            },
            headers=headers,
        )
        assert forged.status_code == 200, forged.text
        saved = forged.json()["saved"]
        assert saved["labeler_id"] == "alice" and saved["llm_agreed"] is False
    files = harness.label_files()
    rows = await harness.label_rows()
    events = await harness.label_events(expect=1)
    assert list(files) == [trade] and list(rows) == [trade] and len(events) == 1
    assert files[trade]["labeler_id"] == rows[trade]["labeler_id"] == events[0]["labeler_id"]
    assert events[0]["labeler_id"] == "alice"
    _matches(events[0], files[trade], rows[trade])
    assert files[trade]["screenshot"] == str(harness.images / f"{trade}_original.png")
    assert files[trade]["chroma_vector_id"] == image_vector_id(files[trade]["screenshot"])


async def test_unwritable_labels_dir_saves_nothing(
    labeling_factory: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the labels directory should be")
    harness = await labeling_factory(labels_dir=blocker / "labels")
    trade = await harness.add_trade(4)
    await harness.wait_items(1)
    await harness.add_labeler("alice", PASSWORD)
    async with httpx.AsyncClient(timeout=10) as client:
        csrf = await harness.login(client, "alice", PASSWORD)
        before = _metric(
            (await client.get(f"{harness.base_url}/metrics")).text,
            "hindsight_labeling_label_write_failures_total",
        )
        response = await client.post(
            f"{harness.base_url}/api/labels",
            json={"trade_id": trade, "label": "approved"},
            headers={"X-CSRF-Token": csrf},
        )
        assert response.status_code == 500
        assert "could not write the label file" in response.json()["message"]
        after = _metric(
            (await client.get(f"{harness.base_url}/metrics")).text,
            "hindsight_labeling_label_write_failures_total",
        )
        assert after == before + 1
    assert await harness.label_rows() == {}
    assert await harness.service.storage.pool.fetchval("SELECT count(*) FROM outbox") == 0
    await asyncio.sleep(0.5)
    assert await harness.label_events() == []


async def test_labels_undo_bulk_exports_and_metrics(harness: Any) -> None:
    trades = [await harness.add_trade(i, suggestion="approved") for i in range(10, 16)]
    await harness.wait_items(len(trades))
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"X-CSRF-Token": await harness.login(client, "alice", PASSWORD)}

        async def post(path: str, body: Any = None) -> Any:
            response = await client.post(f"{url}{path}", json=body, headers=headers)
            assert response.status_code == 200, response.text
            return response.json()

        await post("/api/labels", {"trade_id": trades[0], "label": "approved"})
        await post(
            "/api/labels", {"trade_id": trades[0], "label": "rejected", "quality_grade": "C"}
        )
        await post("/api/labels", {"trade_id": trades[1], "label": "approved"})
        bulk = await post("/api/labels/bulk", {"trade_ids": trades[2:5], "label": "rejected"})
        assert [s["trade_id"] for s in bulk["saved"]] == trades[2:5]
        assert bulk["counts"]["labeled"] == 5 and bulk["counts"]["disagreements"] == 4
        # Undo the last bulk label (unlabeled before) → review; then the relabel of trades[0].
        undo = await post("/api/undo")
        assert undo["undone"] == trades[4]
        assert undo["restored"]["label"] == "review"
        assert undo["restored"]["user_comment"] == UNDO_COMMENT
        undo = await post("/api/undo")
        assert undo["undone"] == trades[3]
        # Unknown trades in a bulk refuse the whole bulk.
        refused = await client.post(
            f"{url}/api/labels/bulk",
            json={"trade_ids": [trades[5], "NOPE"], "label": "approved"},
            headers=headers,
        )
        assert refused.status_code == 404
        assert (await post("/api/undo"))["undone"] == trades[2]
        assert (await post("/api/undo"))["undone"] == trades[1]
        undo = await post("/api/undo")  # the relabel of trades[0]: back to approved
        assert undo["undone"] == trades[0] and undo["restored"]["label"] == "approved"
        assert undo["restored"]["quality_grade"] is None

        review_queue = (await client.get(f"{url}/api/items?status=review")).json()["items"]
        assert {i["trade_id"] for i in review_queue} == set(trades[1:5])
        disagree = (await client.get(f"{url}/api/items?disagreement=1")).json()["items"]
        assert {i["trade_id"] for i in disagree} == set(trades[1:5])
        stats = (await client.get(f"{url}/api/stats")).json()
        assert stats["counts"]["labeled"] == 1 and stats["agreement_rate"] == pytest.approx(0.2)
        assert stats["memory_up"] is False

        jsonl = await client.get(f"{url}/api/export.jsonl")
        exported = [json.loads(line) for line in jsonl.text.splitlines()]
        csv_text = (await client.get(f"{url}/api/export.csv")).text
        metrics = (await client.get(f"{url}/metrics")).text
    files = harness.label_files()
    rows = await harness.label_rows()
    events = await harness.label_events(expect=11)
    assert len(events) == 11  # 3 single + 3 bulk + 5 undos
    assert set(files) == set(rows) == set(trades[:5])
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        latest[event["trade_id"]] = event
    for trade in trades[:5]:
        _matches(latest[trade], files[trade], rows[trade])
    assert {e["trade_id"]: e["label"] for e in exported} == {
        t: files[t]["label"] for t in trades[:5]
    }
    assert all(e["labeler_id"] == "alice" for e in exported)
    assert csv_text.splitlines()[0].startswith("trade_id,label,")
    assert len(csv_text.splitlines()) == 6
    assert 'hindsight_labeling_queue_items{status="review"} 4.0' in metrics
    assert 'hindsight_labeling_queue_items{status="unlabeled"} 1.0' in metrics
    assert "hindsight_labeling_agreement_ratio 0.2" in metrics
    assert 'hindsight_labeling_labels_total{label="review"}' in metrics
    assert 'hindsight_labeling_request_seconds_count{route="/api/labels"}' in metrics


async def test_failed_publish_is_kept_in_outbox_and_retried(harness: Any) -> None:
    trade = await harness.add_trade(20)
    await harness.wait_items(1)
    labels = harness.service.labels
    real_publish = labels.publish
    calls: list[str] = []

    async def nats_down(event: LabelSaved) -> None:
        calls.append(event.message_id())
        raise ConnectionError("nats is down")

    labels.publish = nats_down
    harness.service.outbox.publish = nats_down
    saved = (await labels.save(trade_id=trade, label="approved", labeler_id="alice")).to_dict()
    assert calls and harness.label_files()[trade] == saved
    assert await harness.service.storage.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await harness.label_events() == []
    labels.publish = real_publish
    harness.service.outbox.publish = real_publish

    async def drained() -> bool:
        return await harness.service.storage.pool.fetchval("SELECT count(*) FROM outbox") == 0

    await harness.wait_for(drained, what="outbox drained by the retrier")
    # A second attempt of the same event is deduplicated by JetStream (same occurred_at).
    await harness.service.storage.pool.execute(
        "INSERT INTO outbox (subject, body) VALUES ('label.saved', $1)",
        json.dumps(
            {**saved, "occurred_at": saved["timestamp"], "schema_version": 1, "source": "labeling"}
        ),
    )
    await harness.service.outbox.drain()
    events = await harness.label_events(expect=1)
    assert len(events) == 1
    assert events[0]["occurred_at"] == saved["timestamp"]
    assert events[0]["label"] == "approved"


async def test_similar_uses_memory_search_and_hides_when_memory_is_down(
    labeling_factory: Callable[..., Awaitable[Any]],
) -> None:
    searches: list[dict[str, Any]] = []
    memory = FastAPI()

    @memory.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @memory.post("/v1/search")
    async def search(body: dict[str, Any]) -> dict[str, Any]:
        searches.append(body)
        hits = ["T0031", "T0030", "T0031", "OTHER"]
        return {
            "results": [{"id": f"v{i}", "metadata": {"trade_id": t}} for i, t in enumerate(hits)]
        }

    server = HttpServer(memory, host="127.0.0.1", port=0)
    await server.start()
    try:
        harness = await labeling_factory(memory_url=f"http://127.0.0.1:{server.port}")
        for i in (30, 31):
            await harness.add_trade(i)
        await harness.wait_items(2)
        await harness.add_labeler("alice", PASSWORD)
        async with httpx.AsyncClient(timeout=10) as client:
            await harness.login(client, "alice", PASSWORD)
            page = (await client.get(f"{harness.base_url}/")).text
            assert '"memory_up": true' in page
            similar = (await client.get(f"{harness.base_url}/api/items/T0030/similar")).json()
        assert similar["similar"] == ["T0031", "OTHER"]
        original = str(harness.images / "T0030_original.png")
        assert searches == [
            {"vector_id": image_vector_id(original), "collections": ["trade_cases"], "k": 20}
        ]
    finally:
        await server.stop()


async def test_page_hides_similar_when_memory_is_down(harness: Any) -> None:
    await harness.add_trade(40)
    await harness.wait_items(1)
    await harness.add_labeler("alice", PASSWORD)
    async with httpx.AsyncClient(timeout=10) as client:
        await harness.login(client, "alice", PASSWORD)
        page = (await client.get(f"{harness.base_url}/")).text
        assert '"memory_up": false' in page
        response = await client.get(f"{harness.base_url}/api/items/T0040/similar")
        assert response.status_code == 503


async def test_database_failure_puts_the_file_back(harness: Any) -> None:
    trade = await harness.add_trade(50)
    fresh = await harness.add_trade(51)
    await harness.wait_items(2)
    labels = harness.service.labels
    first = (await labels.save(trade_id=trade, label="approved", labeler_id="alice")).to_dict()
    pool = harness.service.storage.pool
    # A real database refusal after the file was written (no mock): a CHECK constraint.
    await pool.execute("ALTER TABLE labels ADD CONSTRAINT no_rejects CHECK (label <> 'rejected')")
    with pytest.raises(Exception, match="no_rejects"):
        await labels.save(trade_id=trade, label="rejected", labeler_id="alice")
    with pytest.raises(Exception, match="no_rejects"):
        await labels.save(trade_id=fresh, label="rejected", labeler_id="alice")
    assert harness.label_files() == {trade: first}
    rows = await harness.label_rows()
    assert list(rows) == [trade] and rows[trade]["label"] == "approved"
    events = await harness.label_events(expect=1)
    assert [e["label"] for e in events] == ["approved"]
