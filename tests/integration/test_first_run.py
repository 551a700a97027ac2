"""Issue 8's end-to-end check: the market replay in fast mode against every service.

Real EURUSD hourly bars → ``python -m hindsight.devstack.replay --fast`` (signals, gateway
Score, charts, trade docs, outcomes, over the public contracts only) → the seven services
as processes. Then the counts must agree end to end: signals = scored = outcomes at the
trainer; PNGs = image records in memory; every trade in the labeling queue; the trainer
trains by itself once enough outcomes are in (or
the flow went quiet), the registry promotes, the scorer serves.
The honest test ROC-AUC on real EURUSD is printed (it is near 0.5: the rules have no edge,
which is what an honest evaluation should say). A second replay of the same run adds
nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from hindsight.devstack.testing import ServiceProcesses, get_json, wait_until

pytestmark = pytest.mark.integration

TOKEN = "first-run-token"
MODEL = "trade_success"
RUN_ID = "first-run-eurusd"
SERVICES = ("registry", "trainer", "scorer", "gateway", "memory", "embedder", "labeling")
SUBJECTS = ("signal.features", "signal.outcome", "png.created", "json.created")


@pytest.fixture(scope="module")
async def stack(
    nats_url: str, database_url: str, hindsight_test_dir: Path
) -> AsyncIterator[ServiceProcesses]:
    stack = await ServiceProcesses.fresh_platform(
        hindsight_test_dir / f"first-run-{os.getpid()}",
        nats_url=nats_url,
        database_url=database_url,
        database="first_run",
        admin_token=TOKEN,
        extra_env={
            # What `hindsight up` sets for the first run (supervisor.DEV_DEFAULTS), with
            # only EURUSD here (388 signals).
            "HINDSIGHT_TRAINER_AUTO_TRAIN_OUTCOMES": "250",
            "HINDSIGHT_TRAINER_AUTO_TRAIN_INTERVAL_S": "120",
            "HINDSIGHT_TRAINER_AUTO_TRAIN_QUIET_S": "30",
            "HINDSIGHT_TRAINER_MIN_ROWS": "200",
            "HINDSIGHT_REGISTRY_MIN_TEST_ROWS": "50",
            "HINDSIGHT_REGISTRY_MIN_TEST_ROC_AUC": "0.40",
            "HINDSIGHT_REGISTRY_MAX_ECE": "0.25",
            "HINDSIGHT_REGISTRY_REQUIRE_RECOMMENDATION": "false",
            "HINDSIGHT_REGISTRY_MANUAL_APPROVAL": "false",
            "HINDSIGHT_EMBEDDER_CLIP_ARCH": "hindsight-tiny-clip",
            "HINDSIGHT_GATEWAY_BREAKER_SLOW_CALL_MS": "2000",
            "HINDSIGHT_GATEWAY_DEFAULT_DEADLINE_MS": "2000",
        },
    )
    try:
        for service in SERVICES:
            stack.start(service, timeout=120)
        yield stack
    finally:
        stack.stop_all()


def _replay(stack: ServiceProcesses) -> tuple[dict[str, Any], str]:
    """One fast replay of EURUSD as a separate process; its final counters and output."""
    env = {
        **stack.env,
        "HINDSIGHT_GATEWAY_GRPC_PORT": str(stack.ports["gateway_grpc"]),
        "HINDSIGHT_REPLAY_SCORE_TIMEOUT_S": "2.0",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hindsight.devstack.replay",
            "--fast",
            "--data",
            "eurusd",
            "--run-id",
            RUN_ID,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    progress = Path(stack.env["HINDSIGHT_DATA_DIR"]) / "replay" / f"{RUN_ID}.progress.json"
    data: dict[str, Any] = json.loads(progress.read_text())
    last = result.stdout.strip().splitlines()[-1]
    print("\n" + last)
    return data["counters"], last


async def _stream_counts(nats_url: str) -> dict[str, int]:
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        counts = {}
        for subject in SUBJECTS:
            info = await js.stream_info("HINDSIGHT", subjects_filter=subject)
            counts[subject] = int((info.state.subjects or {}).get(subject, 0))
        return counts
    finally:
        await client.close()


def _labeling_items(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hindsight_labeling_queue_items{")
    )


def _learning_summary(trainer: str, registry: str) -> str:
    """The training runs and the registry's versions with their gate verdicts, one line each
    (what to read first when no model reached production)."""
    lines = ["training runs:"]
    for r in get_json(f"{trainer}/v1/runs") or []:
        head = r.get("headline") or {}
        lines.append(
            f"  {r['run_id'][:8]} {r['trigger']}/{r['mode']} {r['status']} "
            f"rows={r.get('dataset_size')} version={r.get('version')} "
            f"test_rows={head.get('test_rows')} auc={head.get('roc_auc')} "
            f"reason={r.get('reason')!r} error={r.get('error')!r}"
        )
    versions = get_json(f"{registry}/v1/models/{MODEL}/versions") or []
    lines.append("registry versions: " + json.dumps(versions, default=str)[:4000])
    return "\n".join(lines)


def _image_records(memory: str) -> int:
    stats = get_json(f"{memory}/v1/collections") or {}
    return sum(p["records"] for p in stats.get("physical", []) if p["modality"] == "image")


@pytest.mark.timeout(1200)
async def test_fast_replay_of_eurusd_flows_through_every_service(
    stack: ServiceProcesses, nats_url: str
) -> None:
    counters, _ = _replay(stack)
    signals = counters["signals"]
    assert counters["finished"] and signals == counters["planned_signals"] > 300
    # Every signal was scored by the gateway (fallback answers included: no model yet).
    assert counters["scored"] == signals and counters["score_failures"] == 0
    assert counters["outcomes"] == signals
    assert counters["pngs"] == 2 * signals

    trainer = stack.url("trainer")
    await wait_until(
        "the trainer to hold every signal with its outcome",
        lambda: (s := get_json(f"{trainer}/v1/stats")) and s["signals_with_outcome"] >= signals,
        timeout=180,
        services=stack,
    )
    stats = get_json(f"{trainer}/v1/stats")
    assert stats["signals"] == signals and stats["outcomes"] == signals

    memory = stack.url("memory")
    print(f"{time.strftime('%X')} step: memory", flush=True)
    await wait_until(
        f"memory to hold the {2 * signals} charts",
        lambda: _image_records(memory) >= 2 * signals,
        timeout=420,
        services=stack,
    )
    assert _image_records(memory) == 2 * signals

    labeling = stack.url("labeling")
    print(f"{time.strftime('%X')} step: labeling", flush=True)
    await wait_until(
        "every trade in the labeling queue",
        lambda: _labeling_items(labeling) >= signals,
        timeout=120,
        services=stack,
    )
    assert _labeling_items(labeling) == signals

    # Nobody asked for training: enough outcomes did (250 of them, or all of them once the
    # flow went quiet). A version the registry refuses (the 250-trigger fires wherever an
    # ingest batch crosses it; too few test rows) is followed by a run on all outcomes once
    # the flow is quiet (trainer README, data-triggered runs; issue 13). The registry
    # promotes, the scorer loads.
    registry = stack.url("registry")
    print(f"{time.strftime('%X')} step: training", flush=True)
    try:
        [deployment] = await wait_until(
            "a production model",
            lambda: [
                d
                for d in (get_json(f"{registry}/v1/deployments") or [])
                if d["model_name"] == MODEL
            ],
            timeout=600,
            services=stack,
        )
    except AssertionError as exc:
        raise AssertionError(f"{_learning_summary(trainer, registry)}\n{exc}") from None
    print(_learning_summary(trainer, registry))
    runs = get_json(f"{trainer}/v1/runs") or []
    assert runs and all(r["trigger"] == "data" for r in runs), runs
    [run] = [r for r in runs if r["version"] == deployment["version"]]
    assert run["status"] == "completed", run
    headline = run["headline"]
    print(
        f"honest test ROC-AUC on real EURUSD ({headline['test_rows']} test rows, "
        f"version {deployment['version']}): {headline['roc_auc']:.3f}; "
        f"Brier {headline['brier']:.3f}; trading recommendation: {headline['recommendation']}"
    )
    await wait_until(
        "the scorer to serve it",
        lambda: (r := get_json(f"{stack.url('scorer')}/readyz")) is not None and r,
        timeout=120,
        services=stack,
    )

    # A second run of the same replay resumes past the end: no new message at all.
    before = await _stream_counts(nats_url)
    print(f"{time.strftime('%X')} step: before", flush=True)
    assert before["signal.features"] == signals and before["png.created"] == 2 * signals
    _, said = _replay(stack)
    assert "already finished" in said
    assert await _stream_counts(nats_url) == before
