"""Shared fixtures of the labeling tests: an in-process service on real NATS + PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.errors import TimeoutError as NatsTimeoutError
from PIL import Image, ImageDraw

from hindsight.common.broker import STREAM
from hindsight.common.events import Event, JsonCreated, PngCreated
from hindsight.labeling.app import Labeling, build_settings
from hindsight.labeling.domain.passwords import hash_password

SYMBOLS = ("EURUSD", "GBPUSD", "BTCUSD", "XAUUSD")


def draw_chart(path: Path, *, seed: int, annotated: bool) -> None:
    """A candlestick chart PNG (annotated: entry / SL / TP lines), 640x360."""
    rng = random.Random(seed)
    width, height, n = 640, 360, 60
    img = Image.new("RGB", (width, height), (14, 18, 24))
    draw = ImageDraw.Draw(img)
    for y in range(30, height, 50):
        draw.line([(0, y), (width, y)], fill=(32, 38, 46))
    price, closes = 100.0, []
    bars = []
    for _ in range(n):
        o = price
        c = o + rng.gauss(0, 1.2)
        h, lo = max(o, c) + abs(rng.gauss(0, 0.6)), min(o, c) - abs(rng.gauss(0, 0.6))
        bars.append((o, h, lo, c))
        closes.append(c)
        price = c
    top, bottom = max(b[1] for b in bars), min(b[2] for b in bars)

    def y_of(p: float) -> float:
        return 20 + (top - p) / (top - bottom + 1e-9) * (height - 40)

    step = (width - 40) / n
    for i, (o, h, lo, c) in enumerate(bars):
        x = 20 + i * step + step / 2
        colour = (47, 191, 113) if c >= o else (239, 83, 80)
        draw.line([(x, y_of(h)), (x, y_of(lo))], fill=colour)
        y0, y1 = sorted((y_of(o), y_of(c)))
        draw.rectangle([x - step * 0.35, y0, x + step * 0.35, max(y1, y0 + 1)], fill=colour)
    if annotated:
        entry = closes[n // 2]
        for p, colour, name in (
            (entry, (79, 140, 255), "entry"),
            (entry - 2.5, (239, 83, 80), "SL"),
            (entry + 4.0, (47, 191, 113), "TP"),
        ):
            y = y_of(p)
            draw.line([(20 + (n // 2) * step, y), (width - 20, y)], fill=colour, width=2)
            draw.text((width - 60, y - 12), name, fill=colour)
        draw.rectangle(
            [20 + (n // 2) * step - 4, 18, 20 + (n // 2) * step + 4, height - 18],
            outline=(240, 180, 41),
        )
    img.save(path, format="PNG")


@dataclass
class Harness:
    """A started labeling service plus helpers to feed it and read what it wrote."""

    service: Labeling
    base_url: str
    nats: NatsClient
    images: Path
    labels_dir: Path
    published: list[Event] = field(default_factory=list)

    async def publish(self, event: Event) -> None:
        js = self.nats.jetstream()
        await js.publish(
            event.subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.message_id()}
        )
        self.published.append(event)

    async def add_trade(
        self,
        index: int,
        *,
        run_id: str = "run-1",
        suggestion: str | None = "approved",
        closed: bool = True,
        images: bool = True,
    ) -> str:
        """Publish a trade's PNGs, trade_meta (open, then closed) and LLM suggestion."""
        trade_id = f"T{index:04d}"
        symbol = SYMBOLS[index % len(SYMBOLS)]
        opened = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(hours=index)
        if images:
            for kind in ("original", "annotated"):
                path = self.images / f"{trade_id}_{kind}.png"
                draw_chart(path, seed=index, annotated=kind == "annotated")
                await self.publish(
                    PngCreated.create(
                        source="chart-renderer",
                        file_path=str(path),
                        run_id=run_id,
                        trade_id=trade_id,
                        symbol=symbol,
                        timeframe="1h",
                        image_type=kind,
                        setup_id="breakout",
                        rule_version="r1",
                    )
                )
        meta: dict[str, Any] = {
            "trade_id": trade_id,
            "symbol": symbol,
            "timeframe": "1h",
            "side": "buy" if index % 2 else "sell",
            "entry": 1.08 + index / 1000,
            "sl": 1.075 + index / 1000,
            "tp": 1.09 + index / 1000,
            "opened_at": opened.isoformat().replace("+00:00", "Z"),
            "closed_at": None,
            "result": None,
            "pnl": None,
            "realised_r": None,
            "signal_id": f"S{index:04d}",
            "setup": "breakout",
        }
        await self.publish(
            JsonCreated.create(
                source="replay",
                doc_type="trade_meta",
                payload=meta,
                run_id=run_id,
                trade_id=trade_id,
                doc_id=f"trade_meta:{trade_id}:open",
            )
        )
        if closed:
            win = index % 3 != 0
            closed_meta = {
                **meta,
                "closed_at": (opened + timedelta(hours=5)).isoformat().replace("+00:00", "Z"),
                "result": "win" if win else "loss",
                "pnl": 120.5 if win else -60.25,
                "realised_r": 2.0 if win else -1.0,
            }
            await self.publish(
                JsonCreated.create(
                    source="replay",
                    doc_type="trade_meta",
                    payload=closed_meta,
                    run_id=run_id,
                    trade_id=trade_id,
                    doc_id=f"trade_meta:{trade_id}:closed",
                )
            )
        if suggestion is not None:
            await self.publish(
                JsonCreated.create(
                    source="llm-adapter",
                    doc_type="llm_suggestion",
                    payload={
                        "trade_id": trade_id,
                        "label": suggestion,
                        "quality_grade": "ABCD"[index % 4],
                        "confidence": round(0.55 + (index % 5) / 12, 2),
                        "comment": "Clean breakout above the range with volume; stop under "
                        "the last swing low.",
                        "model": "rule-based-stand-in/1",
                    },
                    run_id=run_id,
                    trade_id=trade_id,
                    doc_id=f"llm_suggestion:{trade_id}",
                )
            )
        return trade_id

    async def add_labeler(self, name: str, password: str) -> None:
        await self.service.storage.add_labeler(name, hash_password(password))

    async def wait_for(
        self, probe: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = ""
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = await probe()
            if result:
                return result
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    async def wait_items(self, n: int, *, complete: bool = True) -> None:
        """Until ``n`` items exist (with suggestion and closed trade when ``complete``)."""

        async def probe() -> bool:
            rows = await self.service.storage.pool.fetchval(
                "SELECT count(*) FROM items WHERE ($1 = false OR "
                "(suggestion IS NOT NULL AND trade_state = 'closed' "
                "AND original_path IS NOT NULL AND annotated_path IS NOT NULL))",
                complete,
            )
            return int(rows) >= n

        await self.wait_for(probe, what=f"{n} queue items")

    async def login_form(self, client: httpx.AsyncClient) -> str:
        """GET the sign-in page (sets the pre-session cookie); returns its form's CSRF token."""
        page = await client.get(f"{self.base_url}/login")
        assert page.status_code == 200, page.text
        marker = 'name="csrf_token" value="'
        start = page.text.index(marker) + len(marker)
        return page.text[start : page.text.index('"', start)]

    async def post_login(
        self, client: httpx.AsyncClient, name: str, password: str, **kwargs: Any
    ) -> httpx.Response:
        """Sign in the way a browser does: the form's page first, then the form."""
        token = await self.login_form(client)
        return await client.post(
            f"{self.base_url}/login",
            data={"username": name, "password": password, "csrf_token": token},
            **kwargs,
        )

    async def login(self, client: httpx.AsyncClient, name: str, password: str) -> str:
        """Log ``client`` in through the form; returns the page's CSRF token."""
        response = await self.post_login(client, name, password)
        assert response.status_code == 303, response.text
        page = await client.get(f"{self.base_url}/")
        assert page.status_code == 200
        marker = 'name="csrf-token" content="'
        start = page.text.index(marker) + len(marker)
        return page.text[start : page.text.index('"', start)]

    async def label_events(
        self, *, expect: int | None = None, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """Every ``label.saved`` in the stream, in order (waits for ``expect`` of them)."""
        js = self.nats.jetstream()
        deadline = time.monotonic() + timeout
        while True:
            sub = await js.pull_subscribe("label.saved", stream=STREAM)
            events: list[dict[str, Any]] = []
            try:
                while True:
                    try:
                        msgs = await sub.fetch(batch=200, timeout=0.5)
                    except (NatsTimeoutError, TimeoutError):
                        break
                    for msg in msgs:
                        events.append(json.loads(msg.data))
                        await msg.ack()
            finally:
                await sub.unsubscribe()
            if expect is None or len(events) >= expect or time.monotonic() > deadline:
                return events
            await asyncio.sleep(0.2)

    def label_files(self) -> dict[str, dict[str, Any]]:
        """trade_id → the JSON of labels/{trade_id}_label.json."""
        if not self.labels_dir.is_dir():
            return {}
        return {
            p.name.removesuffix("_label.json"): json.loads(p.read_text())
            for p in sorted(self.labels_dir.glob("*_label.json"))
        }

    async def label_rows(self) -> dict[str, dict[str, Any]]:
        rows = await self.service.storage.pool.fetch("SELECT * FROM labels ORDER BY trade_id")
        return {r["trade_id"]: dict(r) for r in rows}


@pytest_asyncio.fixture
async def labeling_factory(
    nats_url: str,
    fresh_database: str,
    jetstream_reset: None,
    nats_client: NatsClient,
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    """Starts a labeling service (keyword overrides → settings); stopped at teardown."""
    started: list[Labeling] = []

    async def start(**overrides: Any) -> Harness:
        images = tmp_path / "images"
        images.mkdir(exist_ok=True)
        labels_dir = overrides.pop("labels_dir", tmp_path / "labels")
        throttle = overrides.pop("login_throttle", None)  # e.g. one on a test clock
        settings = build_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            image_roots=[images],
            data_dir=tmp_path / "data",
            labels_dir=labels_dir,
            http_port=0,
            memory_url=overrides.pop("memory_url", "http://127.0.0.1:9"),
            outbox_retry_s=overrides.pop("outbox_retry_s", 0.5),
            **overrides,
        )
        service = Labeling(settings, login_throttle=throttle)
        await service.start()
        started.append(service)
        return Harness(
            service=service,
            base_url=f"http://127.0.0.1:{service.http.port}",
            nats=nats_client,
            images=images,
            labels_dir=labels_dir,
        )

    try:
        yield start
    finally:
        for service in reversed(started):
            await service.stop()


@pytest_asyncio.fixture
async def harness(labeling_factory: Callable[..., Awaitable[Harness]]) -> Harness:
    """One started labeling service with default settings."""
    return await labeling_factory()
