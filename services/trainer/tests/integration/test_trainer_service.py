"""The trainer in-process against real NATS JetStream and PostgreSQL (no mocks)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient

from hindsight.common.artifacts import (
    METRICS_FILE,
    MODEL_FILE,
    ONNX_FILE,
    load_card,
    resolve_artifact,
    sha256_file,
)
from hindsight.common.events import SignalOutcome, TrainingRequested
from hindsight.devstack.synthetic import generate, publish
from hindsight.trainer.app import Trainer, build_settings, build_trainer

pytestmark = pytest.mark.integration

TOKEN = "trainer-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest_asyncio.fixture
async def trainer(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> AsyncIterator[tuple[Trainer, str]]:
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        artifact_root=tmp_path / "artifacts",
        admin_token=TOKEN,
        http_port=0,
        schedule_enabled=False,
        registry_url="",
        num_boost_round=60,
        early_stopping_rounds=20,
        cv_folds=3,
        bootstrap_resamples=50,
        min_rows=200,
        min_new_outcomes=100,
    )
    app = build_trainer(settings)
    await app.start()
    try:
        yield app, f"http://127.0.0.1:{app.http.port}"
    finally:
        await app.stop()


async def _until(probe: Callable[[], Any], *, timeout: float = 60.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _get(client: httpx.AsyncClient, url: str) -> Any:
    response = await client.get(url)
    response.raise_for_status()
    return response.json()


async def _last(nats_client: NatsClient, stream: str, subject: str) -> Any:
    js = nats_client.jetstream()
    try:
        return await js.get_last_msg(stream, subject)
    except Exception:
        return None


async def _ended(client: httpx.AsyncClient, base: str, run_id: str) -> dict[str, Any]:
    async def probe() -> Any:
        run = await _get(client, f"{base}/v1/runs/{run_id}")
        return run if run["status"] != "running" else None

    result: dict[str, Any] = await _until(probe, timeout=120, what=f"run {run_id}")
    return result


async def test_full_run_from_synthetic_events(
    trainer: tuple[Trainer, str], nats_url: str, nats_client: NatsClient
) -> None:
    app, base = trainer
    pairs = generate(3000, seed=11, derive_share=0.1)
    await publish(nats_url, pairs, ensure_streams=False)
    # The same events again under other message ids: JetStream stores them, the upserts
    # must not duplicate rows.
    js = nats_client.jetstream()
    for signal, outcome in pairs[:50]:
        await js.publish(
            signal.subject, signal.to_json_bytes(), headers={"Nats-Msg-Id": "x" + signal.signal_id}
        )
        await js.publish(
            outcome.subject,
            outcome.to_json_bytes(),
            headers={"Nats-Msg-Id": "y" + outcome.signal_id},
        )

    async with httpx.AsyncClient(timeout=10.0) as client:

        async def ingested() -> Any:
            stats = await _get(client, f"{base}/v1/stats")
            return stats if stats["signals_with_outcome"] >= 3000 else None

        await _until(ingested, timeout=90, what="ingestion")
        await asyncio.sleep(1.0)  # let the duplicates land
        stats = await _get(client, f"{base}/v1/stats")
        assert stats["signals"] == 3000 and stats["outcomes"] == 3000
        assert stats["signals_with_outcome"] == 3000
        assert stats["derived_outcomes"] > 0

        refused = await client.post(f"{base}/v1/runs", json={"mode": "full"})
        assert refused.status_code == 401

        first = await client.post(f"{base}/v1/runs", json={"mode": "full"}, headers=AUTH)
        assert first.status_code == 202, first.text
        second = await client.post(f"{base}/v1/runs", json={"mode": "full"}, headers=AUTH)
        assert second.json()["status"] == "skipped"
        assert "already running" in second.json()["error"]

        run = await _ended(client, base, first.json()["training_run_id"])
        assert run["status"] == "completed", run["error"]
        directory = resolve_artifact(app.settings.artifact_root, run["artifact_uri"])
        for name in (ONNX_FILE, MODEL_FILE, METRICS_FILE):
            assert (directory / name).is_file()
        card = load_card(directory)
        sha = sha256_file(directory / ONNX_FILE)
        assert card.onnx_sha256 == sha == run["sha256"]
        assert card.version == run["version"] and card.training_run_id == run["run_id"]
        test_auc = card.metrics["test"]["roc_auc"]
        print(f"\nintegration run: test ROC-AUC {test_auc:.3f}, duration {run['duration_s']:.1f}s")
        assert test_auc >= 0.65
        assert card.metrics["recommendation"] in {"PROMOTE", "MONITOR", "REJECT"}
        extra = card.model_dump()
        assert extra["parity"]["max_abs_diff"] <= 1e-5
        assert set(extra["reference_distributions"]) == set(card.feature_names)
        assert sum(b.n for b in card.interval_bins) == extra["row_counts"]["validation"]

        async def completed_event() -> Any:
            msg = await _last(nats_client, "HINDSIGHT", "training.completed")
            return msg if msg and json.loads(msg.data)["training_run_id"] == run["run_id"] else None

        msg = await _until(completed_event, timeout=10, what="training.completed")
        event = json.loads(msg.data)
        assert event["status"] == "completed" and event["sha256"] == sha
        assert event["feature_names"] == card.feature_names

        # Nothing new since: an incremental run is skipped with the reason, and says so.
        skipped = await client.post(f"{base}/v1/runs", json={"mode": "incremental"}, headers=AUTH)
        body = skipped.json()
        assert body["status"] == "skipped" and "new outcomes" in body["error"]
        msg = await _until(
            lambda: _last(nats_client, "HINDSIGHT", "training.completed"), what="skip event"
        )
        assert json.loads(msg.data)["status"] == "skipped"

        runs = await _get(client, f"{base}/v1/runs")
        assert {r["status"] for r in runs} == {"completed", "skipped"}
        metrics = (await client.get(f"{base}/metrics")).text
        assert "hindsight_trainer_runs_total" in metrics
        assert (await client.get(f"{base}/readyz")).status_code == 200


async def test_invalid_events_are_dead_lettered(
    trainer: tuple[Trainer, str], nats_url: str, nats_client: NatsClient
) -> None:
    """Bad events inside batches of good ones: those alone go to the DLQ."""
    app, base = trainer
    pairs = generate(40, seed=9)
    js = nats_client.jetstream()
    await publish(nats_url, pairs[:20], ensure_streams=False)
    await js.publish("signal.features", b'{"signal_id": "broken"}', headers={"Nats-Msg-Id": "b1"})
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    underivable = SignalOutcome.create(source="test", signal_id="nope", closed_at=ts)
    await js.publish(underivable.subject, underivable.to_json_bytes())
    await publish(nats_url, pairs[20:], ensure_streams=False)
    msg = await _until(
        lambda: _last(nats_client, "HINDSIGHT_DLQ", "dlq.signal.features"), what="dlq signal"
    )
    assert b"broken" in msg.data
    msg = await _until(
        lambda: _last(nats_client, "HINDSIGHT_DLQ", "dlq.signal.outcome"), what="dlq outcome"
    )
    assert "exit_price" in msg.headers["Hindsight-Error"]
    async with httpx.AsyncClient(timeout=10.0) as client:
        await _until(
            lambda: _stat(client, base, "signals_with_outcome", 40), what="the good events"
        )
        stats = await _get(client, f"{base}/v1/stats")
    assert (stats["signals"], stats["outcomes"]) == (40, 40)


async def test_bad_data_fails_the_run_with_a_report(
    trainer: tuple[Trainer, str], nats_url: str, nats_client: NatsClient
) -> None:
    app, base = trainer
    pairs = generate(400, seed=3)
    # Corrupt the data: outcomes that closed before their signal.
    broken = [
        (s, o.model_copy(update={"closed_at": s.ts - timedelta(hours=1)}))
        if i % 10 == 0
        else (s, o)
        for i, (s, o) in enumerate(pairs)
    ]
    await publish(nats_url, broken, ensure_streams=False)
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def ingested() -> Any:
            stats = await _get(client, f"{base}/v1/stats")
            return stats["signals_with_outcome"] >= 400

        await _until(ingested, what="ingestion")
        # Through training.requested, as the registry would ask.
        request = TrainingRequested.create(source="test", model_name="trade_success", mode="full")
        await nats_client.jetstream().publish(request.subject, request.to_json_bytes())

        async def run_row() -> Any:
            response = await client.get(f"{base}/v1/runs/{request.request_id}")
            return response.status_code == 200 and response.json()["status"] != "running"

        await _until(run_row, what="the failed run")
        run = await _get(client, f"{base}/v1/runs/{request.request_id}")
    assert run["status"] == "failed" and "closed before" in run["error"]
    assert run["report"]["quality"]["passed"] is False
    assert len(run["report"]["quality"]["closed_before_signal"]) > 0
    assert run["artifact_uri"] is None
    assert not list((app.settings.artifact_root / "models").glob("*/*"))
    msg = await _until(
        lambda: _last(nats_client, "HINDSIGHT", "training.completed"), what="failed event"
    )
    event = json.loads(msg.data)
    assert event["status"] == "failed" and event["training_run_id"] == request.request_id
    assert "closed before" in event["error"]


async def test_a_run_left_running_by_a_crash_is_failed_at_start_up(
    trainer: tuple[Trainer, str], nats_client: NatsClient
) -> None:
    app, base = trainer
    await app.storage.create_run(
        run_id="crashed-run",
        model_name="trade_success",
        mode="full",
        trigger="api",
        status="running",
        reason=None,
        requested_by=None,
    )
    await app.runs.recover()  # what start-up does
    async with httpx.AsyncClient(timeout=10.0) as client:
        run = await _get(client, f"{base}/v1/runs/crashed-run")
        assert (await client.get(f"{base}/v1/runs/nope")).status_code == 404
    assert run["status"] == "failed" and "interrupted" in run["error"]
    msg = await _until(lambda: _last(nats_client, "HINDSIGHT", "training.completed"), what="event")
    event = json.loads(msg.data)
    assert event["training_run_id"] == "crashed-run" and event["status"] == "failed"


async def test_enough_new_outcomes_start_a_run_by_themselves(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> None:
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        artifact_root=tmp_path / "artifacts",
        admin_token=TOKEN,
        http_port=0,
        schedule_enabled=False,
        registry_url="",
        num_boost_round=30,
        early_stopping_rounds=10,
        cv_folds=0,
        bootstrap_resamples=0,
        min_rows=200,
        auto_train_outcomes=400,
        auto_train_interval_s=3600,
    )
    app = build_trainer(settings)
    app.scheduler.data_check_s = 0.2
    await app.start()
    base = f"http://127.0.0.1:{app.http.port}"
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            pairs = generate(600, seed=3)
            await publish(nats_url, pairs[:300], ensure_streams=False)
            await asyncio.sleep(1.5)
            assert await _get(client, f"{base}/v1/runs") == []  # 300 < 400: nothing yet

            await publish(nats_url, pairs[300:], ensure_streams=False)

            async def started() -> Any:
                runs = await _get(client, f"{base}/v1/runs")
                return runs or None

            runs = await _until(started, timeout=60, what="a data-triggered run")
            assert runs[0]["trigger"] == "data" and runs[0]["mode"] == "full"
            run = await _ended(client, base, runs[0]["run_id"])
            assert run["status"] == "completed", run["error"]
            await asyncio.sleep(1.0)  # the interval holds back a second run
            assert len(await _get(client, f"{base}/v1/runs")) == 1
    finally:
        await app.stop()


async def test_a_quiet_flow_trains_on_fewer_outcomes_than_the_threshold(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> None:
    """A burst of 300 outcomes (threshold 400) then silence: the quiet trigger trains on
    them; 150 (under min_rows) then silence would not."""
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        artifact_root=tmp_path / "artifacts",
        admin_token=TOKEN,
        http_port=0,
        schedule_enabled=False,
        registry_url="",
        num_boost_round=30,
        early_stopping_rounds=10,
        cv_folds=0,
        bootstrap_resamples=0,
        min_rows=200,
        auto_train_outcomes=400,
        auto_train_interval_s=3600,
        auto_train_quiet_s=2.0,
    )
    app = build_trainer(settings)
    app.scheduler.data_check_s = 0.2
    await app.start()
    base = f"http://127.0.0.1:{app.http.port}"
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            pairs = generate(300, seed=5)
            await publish(nats_url, pairs[:150], ensure_streams=False)
            await _until(
                lambda: _stat(client, base, "signals_with_outcome", 150),
                timeout=30,
                what="150 outcomes",
            )
            await asyncio.sleep(3.0)  # quiet for longer than 2 s, but 150 < min_rows
            assert await _get(client, f"{base}/v1/runs") == []

            await publish(nats_url, pairs[150:], ensure_streams=False)

            async def started() -> Any:
                runs = await _get(client, f"{base}/v1/runs")
                return runs or None

            runs = await _until(started, timeout=60, what="a quiet-triggered run")
            assert runs[0]["trigger"] == "data" and runs[0]["mode"] == "full"
            assert "then none for 2 s" in runs[0]["reason"], runs[0]["reason"]
            run = await _ended(client, base, runs[0]["run_id"])
            assert run["status"] == "completed", run["error"]
            assert run["dataset_size"] == 300
    finally:
        await app.stop()


async def _stat(client: httpx.AsyncClient, base: str, key: str, want: int) -> bool:
    stats = await _get(client, f"{base}/v1/stats")
    return bool(stats) and stats.get(key, 0) >= want
