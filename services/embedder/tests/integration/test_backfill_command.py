"""``hindsight embed`` against a real nats-server: the events it publishes, and --run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hindsight.common.broker import STREAM
from hindsight.embedder.cli import COMMAND
from hindsight.ops.cli import build_parser

pytestmark = pytest.mark.integration


async def _png_events(nc: NatsClient) -> list[dict[str, object]]:
    sub = await nc.jetstream().pull_subscribe(
        "png.created",
        stream=STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
    )
    got = []
    while True:
        try:
            got += await sub.fetch(100, timeout=0.5)
        except TimeoutError:
            break
    await sub.unsubscribe()
    return [json.loads(m.data) for m in got]


async def test_folder_then_run_backfill(
    nats_url: str,
    nats_client: NatsClient,
    jetstream_reset: None,
    tmp_path: Path,
    png_writer: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HINDSIGHT_IMAGE_ROOTS", str(tmp_path))
    for i in range(3):
        png_writer(tmp_path / "run-9" / f"c{i}.png", seed=i, size=(40, 30))
    parser = build_parser({"embed": COMMAND})
    argv = [
        "embed",
        "--folder",
        str(tmp_path / "run-9"),
        "--run-id",
        "run-9",
        "--image-type",
        "annotated",
        "--symbol",
        "GBPUSD",
        "--nats-url",
        nats_url,
    ]

    code = await asyncio.to_thread(lambda: parser.parse_args(argv).handler(parser.parse_args(argv)))
    assert code == 0
    assert "3 png.created" in capsys.readouterr().out
    events = await _png_events(nats_client)
    assert sorted(e["file_path"] for e in events) == sorted(
        str((tmp_path / "run-9" / f"c{i}.png").absolute()) for i in range(3)
    )
    assert {(e["run_id"], e["image_type"], e["symbol"]) for e in events} == {
        ("run-9", "annotated", "GBPUSD")
    }

    # --run finds them in the stream; inside the duplicate window they are dropped again.
    rerun = ["embed", "--run", "run-9", "--nats-url", nats_url]
    code = await asyncio.to_thread(
        lambda: parser.parse_args(rerun).handler(parser.parse_args(rerun))
    )
    assert code == 0
    assert "3 events of run run-9 from the stream: 0 new, 3 duplicate" in capsys.readouterr().out
    assert len(await _png_events(nats_client)) == 3


async def test_folder_outside_the_roots_is_refused(
    nats_url: str,
    tmp_path: Path,
    png_writer: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "roots").mkdir()
    monkeypatch.setenv("HINDSIGHT_IMAGE_ROOTS", str(tmp_path / "roots"))
    png_writer(tmp_path / "other" / "x.png", seed=1, size=(20, 20))
    parser = build_parser({"embed": COMMAND})
    args = parser.parse_args(
        ["embed", "--folder", str(tmp_path / "other"), "--run-id", "r", "--nats-url", nats_url]
    )
    assert args.handler(args) == 2
    assert "outside HINDSIGHT_IMAGE_ROOTS" in capsys.readouterr().err
