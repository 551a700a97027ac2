"""Gateway isolation with real processes (issue 4, "Must show").

A private nats-server (so the session's server is untouched), a real scorer process
serving a real artifact (deployed with ``model.deployed`` on that NATS), a real gateway
process in front of it, and a client calling gateway ``Score`` in a loop with a 100 ms
deadline: SIGKILL the scorer → every call still answers in time (fallbacks), zero
errors; restart it → the breaker half-opens, closes, real scores resume; stop NATS and
PostgreSQL (a private cluster the registry runs on) → scoring goes on. Neither the gateway
nor the scorer is configured with PostgreSQL: the Score path has no database to lose.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import pytest

from hindsight.common.broker import create_broker, ensure_streams, publish_event
from hindsight.common.events import PREDICTION_LOGGED, ModelDeployed
from hindsight.common.settings import BaseServiceSettings
from hindsight.devstack.ports import free_port
from hindsight.devstack.servers import NatsServer, PostgresServer, RunningServer, start_server
from hindsight.devstack.testing import ServiceProcesses
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

sys.path.insert(0, str(Path(__file__).parents[2] / "services" / "scorer" / "tests"))
from scorer_testkit import Artifact, build_artifact  # noqa: E402

pytestmark = pytest.mark.integration

DEADLINE_S = 0.1


@dataclass
class Result:
    at: float
    fallback: bool | None  # None: an error
    reason: str
    error: str = ""


@dataclass
class GatewayStack(ServiceProcesses):
    """A scorer and a gateway as processes, and a feature row the scorer's model accepts."""

    features: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def private_nats(hindsight_test_dir: Path) -> Iterator[tuple[NatsServer, RunningServer]]:
    root = hindsight_test_dir / f"gw-nats-{os.getpid()}"
    server = NatsServer(
        store_dir=root / "store",
        port=free_port(),
        monitor_port=free_port(),
        log_file=root / "nats.log",
        server_name="hindsight-gateway-test",
        port_env=None,
        monitor_port_env=None,
    )
    running = start_server(server)
    try:
        yield server, running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def private_postgres(hindsight_test_dir: Path) -> Iterator[tuple[PostgresServer, RunningServer]]:
    root = hindsight_test_dir / f"gw-pg-{os.getpid()}"
    server = PostgresServer(
        data_dir=root / "postgres",
        port=free_port(),
        log_file=root / "postgres.log",
        fsync=False,
        port_env=None,
    )
    running = start_server(server)
    try:
        yield server, running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def stack(
    private_nats: tuple[NatsServer, RunningServer],
    private_postgres: tuple[PostgresServer, RunningServer],
    hindsight_test_dir: Path,
) -> AsyncIterator[GatewayStack]:
    nats_server, _ = private_nats
    root = hindsight_test_dir / f"gw-{os.getpid()}"
    (root / "logs").mkdir(parents=True, exist_ok=True)
    artifact: Artifact = build_artifact(root / "artifacts", version="20260101T000000Z-gw0001")
    settings = BaseServiceSettings(nats_url=nats_server.url)
    broker = create_broker(settings, client_name="gateway-test")
    await broker.connect()
    await ensure_streams(broker, settings)
    await publish_event(broker, ModelDeployed.create(source="test", **artifact.deployment()))
    await broker.stop()
    names = ("scorer_http", "scorer_grpc", "gateway_http", "registry_http")
    ports = {name: free_port() for name in names}
    ports["gateway_grpc"] = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HINDSIGHT_")}
    env |= {
        "HINDSIGHT_NATS_URL": nats_server.url,
        "HINDSIGHT_ARTIFACT_ROOT": str(root / "artifacts"),
        "HINDSIGHT_DATA_DIR": str(root),
        "HINDSIGHT_SCORER_GRPC_PORT": str(ports["scorer_grpc"]),
        "HINDSIGHT_SCORER_HTTP_PORT": str(ports["scorer_http"]),
        "HINDSIGHT_SCORER_REGISTRY_URL": f"http://127.0.0.1:{free_port()}",
        "HINDSIGHT_GATEWAY_GRPC_PORT": str(ports["gateway_grpc"]),
        "HINDSIGHT_GATEWAY_HTTP_PORT": str(ports["gateway_http"]),
        "HINDSIGHT_GATEWAY_SCORERS": f"127.0.0.1:{ports['scorer_grpc']}",
        "HINDSIGHT_GATEWAY_BREAKER_OPEN_S": "1",
        "HINDSIGHT_REGISTRY_HTTP_PORT": str(ports["registry_http"]),
    }
    # Only the registry gets the database: the learning side's use of PostgreSQL.
    database = {"HINDSIGHT_DATABASE_URL": private_postgres[0].url}
    procs = GatewayStack(
        env=env,
        logs=root / "logs",
        ports=ports,
        features=dict.fromkeys(artifact.feature_names, 0.5),
    )
    try:
        await asyncio.to_thread(procs.start, "scorer", ready_path="/readyz")
        await asyncio.to_thread(procs.start, "gateway", ready_path="/readyz")
        await asyncio.to_thread(
            functools.partial(procs.start, "registry", ready_path="/readyz", extra_env=database)
        )
        yield procs
    finally:
        await asyncio.to_thread(procs.stop_all)


async def _load(port: int, features: dict[str, float], results: list[Result], stop: Any) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        i = 0
        while not stop.is_set():
            i += 1
            request = scoring_pb2.ScoreRequest(signal_id=f"iso-{i}", side="buy", features=features)
            try:
                answer = await stub.Score(request, timeout=DEADLINE_S)
                results.append(Result(time.monotonic(), answer.fallback, answer.fallback_reason))
            except grpc.aio.AioRpcError as exc:
                results.append(Result(time.monotonic(), None, "", f"{exc.code().name}"))
            await asyncio.sleep(0.005)


async def _until(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    procs: ServiceProcesses,
    results: list[Result],
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        await asyncio.sleep(0.05)
    seen = Counter((r.fallback, r.reason, r.error) for r in results[-200:])
    logs = procs.log_tails(lines=10)
    raise AssertionError(f"timed out waiting for {what}; last results {dict(seen)}{logs}")


def _breakers(procs: ServiceProcesses) -> list[dict[str, Any]]:
    url = f"{procs.url('gateway')}/v1/breakers"
    return list(httpx.get(url, timeout=2.0).json())


def _transitions(procs: ServiceProcesses) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{procs.url('gateway')}/metrics", timeout=2.0).text
    found = {}
    for line in text.splitlines():
        if line.startswith("hindsight_gateway_breaker_transitions_total{"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["from_state"].strip('"'), labels["to_state"].strip('"'))
            found[key] = float(line.rsplit(" ", 1)[1])
    return found


async def _logged_fallbacks(url: str) -> list[dict[str, Any]]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        sub = await js.pull_subscribe(PREDICTION_LOGGED, stream="HINDSIGHT")
        events: list[dict[str, Any]] = []
        while True:
            try:
                msgs = await sub.fetch(500, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            events.extend(json.loads(m.data) for m in msgs)
        return events
    finally:
        await client.close()


async def test_scoring_survives_scorer_kill_and_nats_and_postgres_stop(
    stack: GatewayStack,
    private_nats: tuple[NatsServer, RunningServer],
    private_postgres: tuple[PostgresServer, RunningServer],
) -> None:
    nats_server, nats_running = private_nats
    results: list[Result] = []
    stop = asyncio.Event()
    load = asyncio.create_task(_load(stack.ports["gateway_grpc"], stack.features, results, stop))
    try:
        # Phase 1: real scores.
        await _until(
            "real scores",
            lambda: sum(r.fallback is False for r in results) >= 50,
            20,
            stack,
            results,
        )

        # Phase 2: SIGKILL the scorer; every call still answers, with fallbacks.
        stack.stop("scorer", sig=signal.SIGKILL, timeout=5.0)
        killed_at = time.monotonic()
        await asyncio.sleep(2.5)
        during = [r for r in results if r.at > killed_at + 0.01]
        assert during, "no calls while the scorer was down"
        assert all(r.fallback is True for r in during), [r for r in during if not r.fallback]
        reasons = {r.reason for r in during}
        assert reasons <= {"unavailable", "breaker_open", "deadline"}, reasons
        assert "breaker_open" in reasons
        assert _breakers(stack)[0]["state"] in ("open", "half_open")

        # Phase 3: restart it; the breaker half-opens, closes, and real scores resume.
        await asyncio.to_thread(stack.start, "scorer", ready_path="/readyz")
        restarted_at = time.monotonic()
        await _until(
            "real scores after the restart",
            lambda: sum(r.fallback is False and r.at > restarted_at for r in results) >= 20,
            20,
            stack,
            results,
        )
        assert _breakers(stack)[0]["state"] == "closed"
        transitions = _transitions(stack)
        assert transitions.get(("closed", "open"), 0) >= 1, transitions
        assert transitions.get(("open", "half_open"), 0) >= 1, transitions
        assert transitions.get(("half_open", "closed"), 0) >= 1, transitions

        # Every answer (fallbacks included) was logged by the gateway on NATS.
        events = await _logged_fallbacks(nats_server.url)
        fallbacks = [e for e in events if e["fallback"]]
        assert fallbacks and all(e["model_version"] is None for e in fallbacks)
        assert {e["fallback_reason"] for e in fallbacks} <= {
            "unavailable",
            "breaker_open",
            "deadline",
        }
        assert any(not e["fallback"] and e["model_version"] for e in events)

        # Phase 4: stop NATS and PostgreSQL during the load; scoring goes on.
        await asyncio.to_thread(nats_running.stop)
        await asyncio.to_thread(private_postgres[1].stop)
        stopped_at = time.monotonic()
        registry_ready = f"{stack.url('registry')}/readyz"
        await _until(
            "the registry to notice (its readiness fails without PostgreSQL and NATS)",
            lambda: httpx.get(registry_ready, timeout=2.0).status_code == 503,
            20,
            stack,
            results,
        )
        await asyncio.sleep(2.0)
        after = [r for r in results if r.at > stopped_at]
        assert len(after) >= 20
        assert all(r.fallback is False for r in after), {r.reason for r in after}
    finally:
        stop.set()
        await load
    errors = [r for r in results if r.fallback is None]
    assert errors == [], errors[:5]
    print(
        f"\n{len(results)} calls, 0 errors; fallbacks: "
        f"{sum(bool(r.fallback) for r in results)} ({sorted({r.reason for r in results} - {''})})"
    )
