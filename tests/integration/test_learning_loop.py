"""One full pass of learning with the real services as processes (issue 3, "Must show").

synthetic market → 20,000 signal.features + signal.outcome over NATS → trainer run →
registry promotes → a separate gRPC client scores 1,000 held-out signals → ROC-AUC and
ONNX parity; then the scorer is killed and restarted and serves the same version with no
new event; the CLI shows the model.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.metrics import roc_auc_score

from hindsight.common.artifacts import ONNX_FILE, load_card, resolve_artifact
from hindsight.devstack.ports import free_port
from hindsight.devstack.process import ChildSpec, start_child, stop_child
from hindsight.devstack.pytest_plugin import with_database
from hindsight.devstack.synthetic import generate, publish
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = "e2e-admin-token"
MODEL = "trade_success"
N_TRAIN = 20_000
N_HELD_OUT = 1_000


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service + '_http']}"

    def spec(self, service: str) -> ChildSpec:
        health = f"{self.url(service)}/healthz"

        def ready() -> bool:
            try:
                return httpx.get(health, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        return ChildSpec(
            name=service,
            argv=[sys.executable, "-m", f"hindsight.{service}"],
            env=self.env,
            log_file=self.logs / f"{service}.log",
            ready=ready,
            ready_timeout=60.0,
        )

    def start(self, service: str) -> None:
        self.procs[service] = start_child(self.spec(service))

    def stop(self, service: str, sig: int = signal.SIGTERM) -> None:
        stop_child(self.procs.pop(service), name=service, sig=sig, timeout=20.0)


async def _create_database(server_dsn: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)


@pytest.fixture(scope="module")
async def stack(nats_url: str, database_url: str, hindsight_test_dir: Path) -> AsyncIterator[Stack]:
    import nats

    from hindsight.devstack.pytest_plugin import delete_hindsight_streams

    client = await nats.connect(nats_url)
    await delete_hindsight_streams(client)
    await client.close()
    root = hindsight_test_dir / f"loop-{os.getpid()}"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    ports = {
        name: free_port()
        for name in ("trainer_http", "registry_http", "scorer_http", "scorer_grpc")
    }
    env = {
        **os.environ,
        "HINDSIGHT_NATS_URL": nats_url,
        "HINDSIGHT_DATABASE_URL": await _create_database(database_url, "learning_loop"),
        "HINDSIGHT_ARTIFACT_ROOT": str(root / "artifacts"),
        "HINDSIGHT_DATA_DIR": str(root),
        "HINDSIGHT_ADMIN_TOKEN": TOKEN,
        "HINDSIGHT_TRAINER_HTTP_PORT": str(ports["trainer_http"]),
        "HINDSIGHT_TRAINER_SCHEDULE_ENABLED": "false",
        "HINDSIGHT_TRAINER_REGISTRY_URL": f"http://127.0.0.1:{ports['registry_http']}",
        "HINDSIGHT_REGISTRY_HTTP_PORT": str(ports["registry_http"]),
        "HINDSIGHT_REGISTRY_MANUAL_APPROVAL": "false",
        "HINDSIGHT_SCORER_HTTP_PORT": str(ports["scorer_http"]),
        "HINDSIGHT_SCORER_GRPC_PORT": str(ports["scorer_grpc"]),
        "HINDSIGHT_SCORER_REGISTRY_URL": f"http://127.0.0.1:{ports['registry_http']}",
    }
    stack = Stack(env=env, logs=root / "logs", ports=ports)
    try:
        for service in ("registry", "trainer", "scorer"):
            stack.start(service)
        yield stack
    finally:
        for service in list(stack.procs):
            stack.stop(service)


async def _until(
    what: str, probe: Callable[[], Any], *, timeout: float, stack: Stack | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await asyncio.to_thread(probe)
        if result:
            return result
        await asyncio.sleep(0.5)
    logs = ""
    if stack is not None:
        for path in sorted(stack.logs.glob("*.log")):
            logs += f"\n--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-15:])
    raise AssertionError(f"timed out waiting for {what}{logs}")


def _get(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=5.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _requests(signals: list[Any]) -> list[scoring_pb2.ScoreRequest]:
    return [
        scoring_pb2.ScoreRequest(
            signal_id=s.signal_id,
            symbol=s.symbol,
            timeframe=s.timeframe,
            side=s.side,
            features={k: (float("nan") if v is None else float(v)) for k, v in s.features.items()},
        )
        for s in signals
    ]


async def _score(port: int, requests: list[scoring_pb2.ScoreRequest]) -> list[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        return [await stub.Score(r, timeout=5.0) for r in requests]


async def test_full_learning_pass(stack: Stack, nats_url: str) -> None:
    pairs = generate(N_TRAIN + N_HELD_OUT, seed=7)
    pairs.sort(key=lambda pair: pair[0].ts)
    train, held_out = pairs[:N_TRAIN], pairs[N_TRAIN:]

    # Upstream tools publish over plain NATS; the trainer ingests them.
    await publish(nats_url, train)
    trainer = stack.url("trainer")
    await _until(
        "the trainer to ingest every signal and outcome",
        lambda: (s := _get(f"{trainer}/v1/stats")) and s["signals_with_outcome"] >= N_TRAIN,
        timeout=180,
        stack=stack,
    )

    # An ML engineer starts a run through the API (as `hindsight train` does).
    response = httpx.post(
        f"{trainer}/v1/runs",
        json={"model_name": MODEL, "mode": "full", "reason": "e2e"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10.0,
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["training_run_id"]
    run = await _until(
        "the training run to end",
        lambda: (r := _get(f"{trainer}/v1/runs/{run_id}")) and r["status"] != "running" and r,
        timeout=300,
        stack=stack,
    )
    assert run["status"] == "completed", run

    # The registry registers and promotes it; the scorer hot-loads it.
    registry = stack.url("registry")
    [deployment] = await _until(
        "a production deployment",
        lambda: [d for d in (_get(f"{registry}/v1/deployments") or []) if d["model_name"] == MODEL],
        timeout=60,
        stack=stack,
    )
    version = deployment["version"]
    await _until(
        "the scorer to be ready",
        lambda: _get(f"{stack.url('scorer')}/readyz"),
        timeout=60,
        stack=stack,
    )

    # The trading engine's view: a separate gRPC client scores the held-out signals.
    requests = _requests([s for s, _ in held_out])
    answers = await _score(stack.ports["scorer_grpc"], requests)
    assert {a.model_version for a in answers} == {version}
    p = np.array([a.p_success for a in answers])
    y = np.array([1 if o.result == "win" else 0 for _, o in held_out])
    auc = roc_auc_score(y, p)
    print(f"\nheld-out ROC-AUC of the served model {version}: {auc:.4f} on {len(y)} signals")
    assert auc >= 0.65

    # Every answer is the artifact's own ONNX output for the same row.
    directory = resolve_artifact(
        Path(stack.env["HINDSIGHT_ARTIFACT_ROOT"]), deployment["artifact_uri"]
    )
    card = load_card(directory)
    session = ort.InferenceSession(str(directory / ONNX_FILE), providers=["CPUExecutionProvider"])
    x = np.array(
        [
            [np.nan if s.features.get(n) is None else s.features[n] for n in card.feature_names]
            for s, _ in held_out
        ],
        dtype=np.float32,
    )
    expected = session.run(["probabilities"], {"input": x})[0][:, 1]
    assert float(np.max(np.abs(expected - p))) <= 1e-5

    # Restart: kill the scorer; a new one serves the same version with no new event.
    stack.stop("scorer", sig=signal.SIGKILL)
    stack.start("scorer")
    await _until(
        "the restarted scorer",
        lambda: _get(f"{stack.url('scorer')}/readyz"),
        timeout=60,
        stack=stack,
    )
    [again] = await _score(stack.ports["scorer_grpc"], requests[:1])
    assert again.model_version == version
    assert abs(again.p_success - answers[0].p_success) <= 1e-6

    # The CLI for humans sees the same thing through the registry API.
    cli = subprocess.run(
        [sys.executable, "-m", "hindsight.devstack", "models", MODEL],
        env={**stack.env, "HINDSIGHT_REGISTRY_URL": registry},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert version in cli.stdout and "production" in cli.stdout


async def test_promote_v2_then_roll_back_serves_v1_again(stack: Stack) -> None:
    """Runs after the full pass: v2 replaces v1, a rollback brings v1 back to the scorer."""
    registry, trainer = stack.url("registry"), stack.url("trainer")
    [v1] = [d["version"] for d in _get(f"{registry}/v1/deployments") if d["model_name"] == MODEL]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(
        f"{trainer}/v1/runs", json={"model_name": MODEL, "mode": "full"}, headers=auth
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["training_run_id"]
    run = await _until(
        "the second run",
        lambda: (r := _get(f"{trainer}/v1/runs/{run_id}")) and r["status"] != "running" and r,
        timeout=300,
        stack=stack,
    )
    assert run["status"] == "completed", run
    v2 = run["version"]
    assert v2 != v1
    await _until(
        "v2 in production",
        lambda: any(d["version"] == v2 for d in _get(f"{registry}/v1/deployments") or []),
        timeout=60,
        stack=stack,
    )
    probe = _requests([generate(1, seed=99)[0][0]])

    async def served() -> str:
        return str((await _score(stack.ports["scorer_grpc"], probe))[0].model_version)

    await _until_async("the scorer to serve v2", served, v2, stack=stack)

    # An operator rolls back with the CLI (bearer token from the environment).
    cli = subprocess.run(
        [sys.executable, "-m", "hindsight.devstack", "rollback", MODEL, "--reason", "e2e drill"],
        env={**stack.env, "HINDSIGHT_REGISTRY_URL": registry},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    await _until_async("the scorer to serve v1 again", served, v1, stack=stack)

    audit = _get(f"{registry}/v1/models/{MODEL}/audit")
    moves = [(a["version"], a["from_stage"], a["to_stage"]) for a in audit]
    assert (v2, "production", "archived") in moves
    assert (v1, "archived", "production") in moves or (v1, "retired", "production") in moves
    assert any("e2e drill" in a["reason"] for a in audit)


async def _until_async(
    what: str, probe: Callable[[], Any], expected: str, *, stack: Stack, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last == expected:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")
