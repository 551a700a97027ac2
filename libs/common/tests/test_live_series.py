"""Series that must exist and be current without anyone asking: readiness, zeroed counters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge

from hindsight.common.http import HttpServer, Readiness, create_http_app
from hindsight.common.metrics import DLQ_SUBJECTS, init_series

pytestmark = pytest.mark.unit


def _ready(service: str) -> float | None:
    return REGISTRY.get_sample_value("hindsight_ready", {"service": service})


async def _until(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.02)


async def test_ready_gauge_follows_the_checks_without_any_readyz_call() -> None:
    service = "livesvc"
    readiness = Readiness(service, timeout=0.5, every_s=0.05)
    state = {"up": True}

    async def dependency() -> None:
        if not state["up"]:
            raise ConnectionError("refused")

    readiness.register("dependency", dependency)
    server = HttpServer(
        create_http_app(service=service, readiness=readiness), host="127.0.0.1", port=0
    )
    assert _ready(service) == 0  # exported from the app's creation
    await server.start()
    try:
        await _until("ready without /readyz", lambda: _ready(service) == 1)
        assert readiness.last == {"dependency": "ok"}
        state["up"] = False
        await _until("not ready without /readyz", lambda: _ready(service) == 0)
        assert readiness.last == {"dependency": "ConnectionError: refused"}
        # /readyz checks now and agrees with the gauge.
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{server.port}/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"] == {"dependency": "ConnectionError: refused"}
    finally:
        await server.stop()
    # Stopped: nothing re-evaluates any more.
    state["up"] = True
    await asyncio.sleep(0.2)
    assert _ready(service) == 0


def test_init_series_exports_every_label_set_at_zero() -> None:
    registry = CollectorRegistry()
    runs = Counter("t_runs_total", "runs", ["model", "status"], registry=registry)
    assert init_series(runs, ["m"], ("completed", "failed", "skipped")) == 3
    for status in ("completed", "failed", "skipped"):
        assert registry.get_sample_value("t_runs_total", {"model": "m", "status": status}) == 0
    # Idempotent, and an existing count is kept.
    runs.labels("m", "failed").inc()
    init_series(runs, ["m"], ["failed"])
    assert registry.get_sample_value("t_runs_total", {"model": "m", "status": "failed"}) == 1
    gauge = Gauge("t_depth", "depth", ["subject"], registry=registry)
    init_series(gauge, ["a", "b"])
    assert registry.get_sample_value("t_depth", {"subject": "b"}) == 0


def test_dlq_depth_exists_for_every_subject_from_import() -> None:
    assert "dlq.signal.features" in DLQ_SUBJECTS
    for subject in DLQ_SUBJECTS:
        assert REGISTRY.get_sample_value("hindsight_dlq_messages", {"subject": subject}) is not None
