"""Data specs over HTTP against real NATS JetStream and PostgreSQL: ``PUT
/v1/data-specs/{model_name}`` (201 new, 200 the same again, 409 another content under a taken
version or a version not after the newest, 401 without the token, 422 naming the field),
``GET`` back, a run trains on the newest registered version, and a restarted trainer still
has it (persisted in the trainer's schema)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hindsight.common.artifacts import load_card, resolve_artifact
from hindsight.devstack.synthetic import generate, publish
from hindsight.trainer.app import Trainer, build_settings, build_trainer
from hindsight.trainer.snapshot import read_snapshot

pytestmark = pytest.mark.integration

TOKEN = "trainer-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def settings(nats_url: str, dsn: str, tmp_path: Path) -> Any:
    return build_settings(
        nats_url=nats_url,
        database_url=dsn,
        artifact_root=tmp_path / "artifacts",
        admin_token=TOKEN,
        http_port=0,
        schedule_enabled=False,
        registry_url="",
        num_boost_round=30,
        early_stopping_rounds=15,
        cv_folds=0,
        bootstrap_resamples=10,
        min_rows=200,
        drift_enabled=False,
    )


async def _until(probe: Callable[[], Any], *, timeout: float = 120.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _spec(version: int, symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"version": version, "feature_schema_version": 2, "symbols": symbols, **extra}


async def test_data_specs_registered_over_http_are_kept_and_used_by_runs(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> None:
    pairs = generate(700, seed=51, n_features=5, feature_schema_version=2, symbols=["XA", "XB"])
    xb = {s.signal_id for s, _ in pairs if s.symbol == "XB"}
    trainer: Trainer = build_trainer(settings(nats_url, fresh_database, tmp_path))
    await trainer.start()
    try:
        base = f"http://127.0.0.1:{trainer.http.port}/v1"
        await publish(nats_url, pairs, ensure_streams=False)
        async with httpx.AsyncClient(timeout=10.0) as client:
            put = f"{base}/data-specs/gamma"
            assert (await client.put(put, json=_spec(1, ["XA"]))).status_code == 401
            first = await client.put(put, json=_spec(1, ["XA"]), headers=AUTH)
            assert first.status_code == 201, first.text
            body = first.json()
            assert (body["model_name"], body["version"], body["origin"]) == ("gamma", 1, "api")
            assert body["symbols"] == ["XA"] and body["created_by"] == "api"
            again = await client.put(put, json=_spec(1, ["XA"], model_name="gamma"), headers=AUTH)
            assert again.status_code == 200 and again.json() == body
            changed = await client.put(put, json=_spec(1, ["XB"]), headers=AUTH)
            assert changed.status_code == 409, changed.text
            assert body["content_hash"] in changed.json()["message"]
            second = await client.put(put, json=_spec(3, ["XB"]), headers=AUTH)  # 2 skipped
            assert second.status_code == 201, second.text
            older = await client.put(put, json=_spec(2, ["XA", "XB"]), headers=AUTH)
            assert older.status_code == 409 and "newest registered version 3" in older.text
            bad = await client.put(put, json=_spec(4, []), headers=AUTH)
            assert bad.status_code == 422 and bad.json()["field"] == "symbols", bad.text
            other = await client.put(put, json=_spec(4, ["XA"], model_name="delta"), headers=AUTH)
            assert other.status_code == 422 and other.json()["field"] == "model_name"
            extra = await client.put(put, json=_spec(4, ["XA"], colour="red"), headers=AUTH)
            assert extra.status_code == 422, extra.text
            got = (await client.get(f"{base}/data-specs/gamma")).json()
            assert (got["version"], got["symbols"]) == (3, ["XB"])
            assert (await client.get(f"{base}/data-specs/nobody")).status_code == 404

            async def ingested() -> Any:
                stats = (await client.get(f"{base}/stats")).json()
                return stats["signals_with_outcome"] >= len(pairs)

            await _until(ingested, what="ingestion")
            started = await client.post(
                f"{base}/runs", json={"model_name": "gamma", "mode": "full"}, headers=AUTH
            )
            assert started.status_code == 202, started.text
            run_id = started.json()["training_run_id"]

            async def ended() -> Any:
                run = (await client.get(f"{base}/runs/{run_id}")).json()
                return run if run["status"] != "running" else None

            run = await _until(ended, timeout=180, what="the run of gamma")
        assert run["status"] == "completed", run["error"]
        directory = resolve_artifact(trainer.settings.artifact_root, run["artifact_uri"])
        card = load_card(directory).model_dump()
        assert card["data_spec"]["version"] == 3 and card["data_spec"]["symbols"] == ["XB"]
        rows, _, _ = read_snapshot(directory)
        assert {r.signal_id for r in rows} == xb and run["dataset_size"] == len(xb)
    finally:
        await trainer.stop()

    # A restarted trainer reads the registered specs back from its schema.
    restarted: Trainer = build_trainer(settings(nats_url, fresh_database, tmp_path))
    await restarted.start()
    try:
        base = f"http://127.0.0.1:{restarted.http.port}/v1"
        async with httpx.AsyncClient(timeout=10.0) as client:
            listed = (await client.get(f"{base}/data-specs")).json()
        by_name = {s["model_name"]: s for s in listed}
        assert (by_name["gamma"]["version"], by_name["gamma"]["symbols"]) == (3, ["XB"])
        default = by_name[restarted.settings.model_name]
        assert (default["origin"], default["version"]) == ("settings", None)
        assert restarted.runs.spec("gamma").version == 3
    finally:
        await restarted.stop()
