"""A killed embedder's messages come back in seconds, not after a long ack wait.

The embedder runs as real processes (``python -m hindsight.embedder``, the small
random-weight CLIP) against a real nats-server. The first holds 120 png.created unacked:
they wait in its micro-batcher (a long flush time), longer than the ack wait, kept by
in-progress heartbeats. A second embedder (the restarted one, models already loaded) runs
beside it with a short flush time; the first is killed with SIGKILL: every message is
redelivered and embedded once within 30 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hindsight.common.broker import STREAM
from hindsight.common.events import PngCreated
from hindsight.devstack.testing import ServiceProcesses, wait_until
from hindsight.embedder.models import TINY_CLIP_ARCH

# Two embedder start-ups (torch, CLIP, MiniLM) take minutes on 2 busy cores.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

N = 120
ACK_WAIT_S = 15.0
DURABLE = "embedder_png"


# Starting a service blocks the test's event loop for as long as the models load (minutes
# on 2 busy cores), which a long-lived NATS client would not survive: each check connects.


async def _consumer(nats_url: str) -> Any:
    nc = await nats.connect(nats_url)
    try:
        return await nc.jetstream().consumer_info(STREAM, DURABLE)
    finally:
        await nc.close()


async def _embeddings(nats_url: str) -> list[dict[str, Any]]:
    """Every embedding.created in the stream (what memory would consume)."""
    nc = await nats.connect(nats_url)
    try:
        return await _read_embeddings(nc)
    finally:
        await nc.close()


async def _read_embeddings(nc: NatsClient) -> list[dict[str, Any]]:
    sub = await nc.jetstream().pull_subscribe(
        "embedding.created",
        stream=STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
    )
    got: list[Any] = []
    while True:
        try:
            got += await sub.fetch(200, timeout=0.5)
        except TimeoutError:
            break
    await sub.unsubscribe()
    return [json.loads(m.data) for m in got]


def _platform(root: Path, nats_url: str, database_url: str, images: Path) -> ServiceProcesses:
    return ServiceProcesses.platform(
        root,
        nats_url=nats_url,
        database_url=database_url,
        admin_token="unused",
        extra_env={
            "HINDSIGHT_EMBEDDER_CLIP_ARCH": TINY_CLIP_ARCH,
            "HINDSIGHT_EMBEDDER_TORCH_THREADS": "1",
            "HINDSIGHT_EMBEDDER_ACK_WAIT_S": str(ACK_WAIT_S),
            "HINDSIGHT_IMAGE_ROOTS": str(images),
        },
    )


async def test_killed_embedder_messages_are_redelivered_within_30s(
    nats_url: str,
    database_url: str,
    jetstream_reset: None,
    hindsight_test_dir: Path,
    png_writer: Callable[..., Path],
) -> None:
    root = hindsight_test_dir / f"embedder-crash-{os.getpid()}"
    images = root / "images"
    first = _platform(root / "first", nats_url, database_url, images)
    # The process that takes over: started (models loaded) before the kill, so what is
    # measured is the redelivery, not the model load (minutes on 2 busy cores).
    second = _platform(root / "second", nats_url, database_url, images)
    events = [
        PngCreated.create(
            source="chart-renderer",
            file_path=str(png_writer(images / "crash" / f"chart-{i:03d}.png", seed=i)),
            run_id="crash",
            trade_id=f"t-{i}",
        )
        for i in range(N)
    ]
    # First process: a batch flushes only after 600 s (or at 256 items): all 120 stay held.
    holding = {
        "HINDSIGHT_EMBEDDER_BATCH_SIZE": "256",
        "HINDSIGHT_EMBEDDER_BATCH_TIMEOUT_MS": "600000",
    }
    quick = {"HINDSIGHT_EMBEDDER_BATCH_SIZE": "32", "HINDSIGHT_EMBEDDER_BATCH_TIMEOUT_MS": "20"}
    try:
        first.start("embedder", ready_path="/readyz", timeout=600, extra_env=holding)
        nc = await nats.connect(nats_url)
        try:
            for event in events:
                await nc.jetstream().publish(
                    event.subject,
                    event.to_json_bytes(),
                    headers={"Nats-Msg-Id": event.message_id()},
                )
        finally:
            await nc.close()

        async def all_held() -> bool:
            info = await _consumer(nats_url)
            return info.num_ack_pending == N and info.num_pending == 0

        await wait_until("120 messages held by the embedder", all_held, timeout=60, services=first)
        held_since = time.monotonic()
        second.start("embedder", ready_path="/readyz", timeout=600, extra_env=quick)
        # Held longer than the ack wait: without heartbeats the server would have
        # redelivered them (to the second process) by now.
        await asyncio.sleep(max(0.0, ACK_WAIT_S + 5 - (time.monotonic() - held_since)))
        info = await _consumer(nats_url)
        assert (info.num_ack_pending, info.num_redelivered) == (N, 0), info
        assert await _embeddings(nats_url) == []

        held_for = time.monotonic() - held_since
        first.stop("embedder", sig=signal.SIGKILL, timeout=5.0)
        killed = time.monotonic()

        async def all_embedded() -> list[dict[str, Any]] | None:
            got = await _embeddings(nats_url)
            return got if len(got) >= N else None

        await wait_until("120 embeddings after the kill", all_embedded, timeout=30, services=second)
        done = time.monotonic()

        async def settled() -> bool:
            info = await _consumer(nats_url)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await wait_until("every message acked", settled, timeout=15, services=second)
        got = await _embeddings(nats_url)
    finally:
        first.stop_all()
        second.stop_all()

    # Once each: one embedding.created per PNG, none twice.
    assert len(got) == N
    assert sorted(r["metadata"]["file_path"] for r in got) == sorted(e.file_path for e in events)
    assert len({r["vector_id"] for r in got}) == N
    print(
        f"\nheld {N} unacked for {held_for:.1f} s (ack wait {ACK_WAIT_S:.0f} s), 0 redelivered; "
        f"SIGKILL; all {N} embedded once {done - killed:.1f} s after the kill"
    )
