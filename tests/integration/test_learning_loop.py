"""One full pass of learning with the real services as processes (issue 3, "Must show").

synthetic market → 20,000 signal.features + signal.outcome over NATS → trainer run →
registry promotes → a separate gRPC client scores 1,000 held-out signals → ROC-AUC and
ONNX parity; then the scorer is killed and restarted and serves the same version with no
new event; the CLI shows the model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import onnxruntime as ort
import pytest
from sklearn.metrics import roc_auc_score

from hindsight.common.artifacts import ONNX_FILE, load_card, resolve_artifact
from hindsight.devstack.synthetic import generate, publish
from hindsight.devstack.testing import (
    ServiceProcesses,
    get_json,
    wait_until,
)
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration

TOKEN = "e2e-admin-token"
MODEL = "trade_success"
N_TRAIN = 20_000
N_HELD_OUT = 1_000


@pytest.fixture(scope="module")
async def stack(
    nats_url: str, database_url: str, hindsight_test_dir: Path
) -> AsyncIterator[ServiceProcesses]:
    stack = await ServiceProcesses.fresh_platform(
        hindsight_test_dir / f"loop-{os.getpid()}",
        nats_url=nats_url,
        database_url=database_url,
        database="learning_loop",
        admin_token=TOKEN,
        extra_env={
            "HINDSIGHT_REGISTRY_MANUAL_APPROVAL": "false",
            # A shared 2-core CI machine: do not let slow calls open the breaker here.
            "HINDSIGHT_GATEWAY_BREAKER_SLOW_CALL_MS": "2000",
            "HINDSIGHT_GATEWAY_DEFAULT_DEADLINE_MS": "2000",
        },
    )
    try:
        for service in ("registry", "trainer", "scorer", "gateway"):
            stack.start(service)
        yield stack
    finally:
        stack.stop_all()


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


async def test_full_learning_pass(stack: ServiceProcesses, nats_url: str) -> None:
    pairs = generate(N_TRAIN + N_HELD_OUT, seed=7)
    pairs.sort(key=lambda pair: pair[0].ts)
    train, held_out = pairs[:N_TRAIN], pairs[N_TRAIN:]

    # Upstream tools publish over plain NATS; the trainer ingests them.
    await publish(nats_url, train)
    trainer = stack.url("trainer")
    await wait_until(
        "the trainer to ingest every signal and outcome",
        lambda: (s := get_json(f"{trainer}/v1/stats")) and s["signals_with_outcome"] >= N_TRAIN,
        timeout=180,
        services=stack,
    )

    # An ML engineer starts a run through the API (as `hindsight train` does).
    await _train(stack, reason="e2e")

    # The registry registers and promotes it; the scorer hot-loads it.
    registry = stack.url("registry")
    [deployment] = await wait_until(
        "a production deployment",
        lambda: [
            d for d in (get_json(f"{registry}/v1/deployments") or []) if d["model_name"] == MODEL
        ],
        timeout=60,
        services=stack,
    )
    version = deployment["version"]
    await wait_until(
        "the scorer to be ready",
        lambda: get_json(f"{stack.url('scorer')}/readyz"),
        timeout=60,
        services=stack,
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
    await wait_until(
        "the restarted scorer",
        lambda: get_json(f"{stack.url('scorer')}/readyz"),
        timeout=60,
        services=stack,
    )
    [again] = await _score(stack.ports["scorer_grpc"], requests[:1])
    assert again.model_version == version
    assert abs(again.p_success - answers[0].p_success) <= 1e-6

    # The CLI for humans sees the same thing through the registry API.
    cli = subprocess.run(
        [sys.executable, "-m", "hindsight.ops", "models", MODEL],
        env={**stack.env, "HINDSIGHT_REGISTRY_URL": registry},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    assert version in cli.stdout and "production" in cli.stdout


async def test_promote_v2_then_roll_back_serves_v1_again(stack: ServiceProcesses) -> None:
    """Runs after the full pass: v2 replaces v1, a rollback brings v1 back to the scorer."""
    registry = stack.url("registry")
    [v1] = [
        d["version"] for d in get_json(f"{registry}/v1/deployments") if d["model_name"] == MODEL
    ]
    v2 = (await _train(stack, reason="v2"))["version"]
    assert v2 != v1
    await wait_until(
        "v2 in production",
        lambda: [d["version"] for d in _production(registry)] == [v2],
        timeout=60,
        services=stack,
    )
    probe = _requests([generate(1, seed=99)[0][0]])[0]
    port = stack.ports["scorer_grpc"]
    await wait_until("the scorer to serve v2", lambda: _served(port, probe) == v2, timeout=60)

    # An operator rolls back with the CLI (bearer token from the environment).
    cli = subprocess.run(
        [sys.executable, "-m", "hindsight.ops", "rollback", MODEL, "--reason", "e2e drill"],
        env={**stack.env, "HINDSIGHT_REGISTRY_URL": registry},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cli.returncode == 0, cli.stderr
    await wait_until("v1 served again", lambda: _served(port, probe) == v1, timeout=60)

    audit = get_json(f"{registry}/v1/models/{MODEL}/audit")
    moves = [(a["version"], a["from_stage"], a["to_stage"]) for a in audit]
    assert (v2, "production", "archived") in moves
    assert (v1, "archived", "production") in moves or (v1, "retired", "production") in moves
    assert any("e2e drill" in a["reason"] for a in audit)


async def _train(stack: ServiceProcesses, *, reason: str) -> dict[str, Any]:
    """Start a full run through the trainer's API and wait for it to complete."""
    trainer = stack.url("trainer")
    response = httpx.post(
        f"{trainer}/v1/runs",
        json={"model_name": MODEL, "mode": "full", "reason": reason},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10.0,
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["training_run_id"]
    run: dict[str, Any] = await wait_until(
        f"training run {reason}",
        lambda: (r := get_json(f"{trainer}/v1/runs/{run_id}")) and r["status"] != "running" and r,
        timeout=300,
        services=stack,
    )
    assert run["status"] == "completed", run
    return run


def _production(registry: str) -> list[dict[str, Any]]:
    """The registry's production deployment of MODEL (a list of at most one)."""
    deployments = get_json(f"{registry}/v1/deployments") or []
    return [d for d in deployments if d["model_name"] == MODEL]


def _served(port: int, request: scoring_pb2.ScoreRequest) -> str:
    """The version that answers ``request`` now (a plain blocking client)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = scoring_pb2_grpc.ScoringStub(channel).Score(request, timeout=5.0)
    return str(answer.model_version)


async def test_ab_experiment_through_the_gateway_is_decided_by_outcomes(
    stack: ServiceProcesses, nats_url: str
) -> None:
    """Registry starts an A/B; the gateway splits real traffic; outcomes decide it."""
    registry = stack.url("registry")
    [control] = [d["version"] for d in _production(registry)]
    # As in production: new versions wait in staging for an experiment or an approval.
    stack.stop("registry")
    stack.start("registry", extra_env={"HINDSIGHT_REGISTRY_MANUAL_APPROVAL": "true"})
    candidate = (await _train(stack, reason="ab candidate"))["version"]
    staged = await wait_until(
        "the candidate in staging",
        lambda: [
            v
            for v in get_json(f"{registry}/v1/models/{MODEL}/versions") or []
            if v["version"] == candidate and v["stage"] == "staging"
        ],
        timeout=60,
        services=stack,
    )
    assert staged and [d["version"] for d in _production(registry)] == [control]
    created = _admin_post(
        f"{registry}/v1/experiments",
        model_name=MODEL,
        kind="ab",
        candidate_version=candidate,
        candidate_share=0.5,
        min_samples_per_arm=50,
    )
    experiment_id = created["experiment_id"]
    await wait_until(
        "the gateway to route the experiment",
        lambda: experiment_id in json.dumps(get_json(f"{stack.url('gateway')}/v1/routes")),
        timeout=60,
        services=stack,
    )

    # The trading engine scores fresh signals through the gateway; the trades then close.
    pairs = generate(400, seed=11, start=datetime(2030, 1, 1, tzinfo=UTC))
    answers = await _score(stack.ports["gateway_grpc"], _requests([s for s, _ in pairs]))
    arms = [a.arm for a in answers]
    assert not any(a.fallback for a in answers)
    assert 120 <= arms.count("candidate") <= 280, arms.count("candidate")
    for answer in answers:
        expected = candidate if answer.arm == "candidate" else control
        assert answer.model_version == expected
    again = await _score(stack.ports["gateway_grpc"], _requests([s for s, _ in pairs[:50]]))
    assert [a.arm for a in again] == arms[:50], "sticky: same signal_id, same arm"
    await publish(nats_url, pairs)

    def joined() -> Any:
        live = (get_json(f"{registry}/v1/experiments/{experiment_id}") or {}).get("live") or {}
        arms_n = {arm: m.get("n", 0) for arm, m in (live.get("per_arm") or {}).items()}
        return arms_n if sum(arms_n.values()) >= 400 else None

    per_arm_n = await wait_until("predictions joined to outcomes", joined, timeout=90)
    assert per_arm_n == {"control": arms.count("control"), "candidate": arms.count("candidate")}
    decided = _admin_post(f"{registry}/v1/experiments/{experiment_id}/complete")
    print(f"\nA/B {control} vs {candidate}: {decided.get('decision')}, p={decided.get('p_value')}")
    assert decided["decision"] in {"promote", "keep", "inconclusive"}
    assert decided["state"] == "completed"
    await wait_until(
        "the gateway to drop the experiment",
        lambda: experiment_id not in json.dumps(get_json(f"{stack.url('gateway')}/v1/routes")),
        timeout=60,
        services=stack,
    )


def _admin_post(url: str, **body: Any) -> Any:
    response = httpx.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code in (200, 201, 202), f"{url}: {response.status_code} {response.text}"
    return response.json()
