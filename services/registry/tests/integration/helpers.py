"""Test artifacts, events and waits for the registry's integration tests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient

from hindsight.common.broker import STREAM

T = TypeVar("T")
MODEL = "trade_success"


def make_artifact(
    root: Path,
    version: str,
    *,
    model_name: str = MODEL,
    roc_auc: float = 0.70,
    ece: float = 0.03,
    test_rows: int = 3000,
    production: dict[str, Any] | None = None,
    recommendation: str = "PROMOTE",
    win_rate: float | None = None,
    brier: float | None = None,
) -> str:
    """Write models/{name}/{version}/ (random model.onnx bytes + metrics.json); its sha256."""
    directory = root / "models" / model_name / version
    directory.mkdir(parents=True)
    onnx = os.urandom(256)
    (directory / "model.onnx").write_bytes(onnx)
    sha = hashlib.sha256(onnx).hexdigest()
    card = {
        "model_name": model_name,
        "version": version,
        "training_run_id": f"run-{version}",
        "created_at": datetime.now(UTC).isoformat(),
        "feature_names": ["f1", "f2"],
        "feature_schema_version": 1,
        "onnx_sha256": sha,
        "metrics": {
            "test": {"roc_auc": roc_auc, "ece": ece, "rows": test_rows},
            "production": production,
            "trading": {"recommendation": recommendation},
        },
        "interval_bins": [],
    }
    if win_rate is not None:
        card["metrics"]["trading"].update({"win_rate": win_rate, "trades": 500})  # type: ignore[index]
    if brier is not None:
        card["metrics"]["test"]["brier"] = brier  # type: ignore[index]
    (directory / "metrics.json").write_text(json.dumps(card))
    return sha


def completed(
    version: str, sha256: str, *, model_name: str = MODEL, **extra: Any
) -> dict[str, Any]:
    """A training.completed body for a completed run."""
    body = {
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "test",
        "training_run_id": f"run-{version}",
        "model_name": model_name,
        "status": "completed",
        "version": version,
        "artifact_uri": f"models/{model_name}/{version}",
        "sha256": sha256,
        "dataset_size": 20000,
    }
    body.update(extra)
    return body


async def publish(nc: NatsClient, body: dict[str, Any], *, msg_id: str | None = None) -> None:
    """Publish a training.completed with a plain NATS client (JetStream ack awaited)."""
    headers = {"Nats-Msg-Id": msg_id or body["training_run_id"]}
    await nc.jetstream().publish(
        "training.completed", json.dumps(body).encode(), stream=STREAM, headers=headers
    )


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 15.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def fetch_all(
    nc: NatsClient, subject: str, expected: int, *, stream: str = STREAM, timeout: float = 15.0
) -> list[Any]:
    """Read ``expected`` messages of ``subject`` from the start of ``stream``."""
    sub = await nc.jetstream().pull_subscribe(subject, stream=stream, durable=None)
    got: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < expected and asyncio.get_running_loop().time() < deadline:
        try:
            got += await sub.fetch(expected - len(got), timeout=0.5)
        except TimeoutError:
            continue
    for msg in got:
        await msg.ack()
    await sub.unsubscribe()
    return got


def new_version(prefix: str = "20261121T100000Z") -> str:
    """A unique version string in the trainer's format."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def publish_raw(nc: NatsClient, subject: str, body: dict[str, Any], msg_id: str) -> None:
    """Publish any event body with a plain NATS client (JetStream ack awaited)."""
    await nc.jetstream().publish(
        subject,
        json.dumps(body).encode(),
        stream=STREAM,
        headers={"Nats-Msg-Id": f"{subject}:{msg_id}"},
    )


def prediction(
    signal_id: str,
    p: float,
    *,
    version: str | None,
    experiment_id: str | None = None,
    arm: str | None = None,
    fallback: bool = False,
) -> dict[str, Any]:
    """A prediction.logged body."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "test",
        "prediction_id": str(uuid.uuid4()),
        "signal_id": signal_id,
        "model_version": version,
        "p_success": float(p),
        "fallback": fallback,
        "latency_ms": 1.0,
    }
    if experiment_id is not None:
        body["experiment_id"] = experiment_id
    if arm is not None:
        body["arm"] = arm
    return body


def outcome(signal_id: str, win: bool | None, *, seconds: int = 0) -> dict[str, Any]:
    """A signal.outcome body (result left out when ``win`` is None)."""
    body: dict[str, Any] = {
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "test",
        "signal_id": signal_id,
        "closed_at": datetime.fromtimestamp(1_790_000_000 + seconds, UTC).isoformat(),
    }
    if win is not None:
        body["result"] = "win" if win else "loss"
    return body


async def publish_many(nc: NatsClient, items: list[tuple[str, dict[str, Any], str]]) -> None:
    """Publish (subject, body, msg_id) triples, 100 at a time concurrently."""
    for start in range(0, len(items), 100):
        await asyncio.gather(*(publish_raw(nc, s, b, m) for s, b, m in items[start : start + 100]))
