"""Models scoped to their data specs, the feature-schema check at ingest, training snapshots.

The trainer runs in-process against real NATS JetStream and PostgreSQL; the registry is a
small stand-in on a real port that serves one feature schema (as test_production.py does).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
from fastapi import FastAPI, HTTPException
from nats.aio.client import Client as NatsClient

from hindsight.common.artifacts import load_card, resolve_artifact
from hindsight.common.db import create_pool
from hindsight.common.errors import InvalidInputError
from hindsight.common.http import HttpServer
from hindsight.devstack.ports import free_port
from hindsight.devstack.synthetic import feature_name, generate, publish
from hindsight.trainer.app import Trainer, build_settings, build_trainer
from hindsight.trainer.ingest import Ingestor
from hindsight.trainer.metrics import SCHEMA_CHECKS
from hindsight.trainer.schemas import RegistrySchemas
from hindsight.trainer.snapshot import SNAPSHOT_DIR, read_snapshot, snapshot_hash
from hindsight.trainer.storage import MIGRATIONS, Storage

pytestmark = pytest.mark.integration

TOKEN = "trainer-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N_FEATURES = 6
SCHEMA_V2 = {
    "version": 2,
    "content_hash": "not checked here",
    "features": [
        {"name": feature_name(j), "dtype": "float", "min": -50.0, "max": 50.0}
        for j in range(N_FEATURES)
    ],
    "created_at": "2024-01-01T00:00:00Z",
    "created_by": "test",
}


@pytest_asyncio.fixture
async def registry() -> AsyncIterator[str]:
    """Serves feature schema v2 (404 for any other version) and no deployments."""
    app = FastAPI()

    @app.get("/v1/feature-schemas/{version}")
    async def schema(version: int) -> dict[str, Any]:
        if version != 2:
            raise HTTPException(404, f"no feature schema {version}")
        return SCHEMA_V2

    @app.get("/v1/deployments")
    async def deployments() -> list[dict[str, Any]]:
        return []

    server = HttpServer(app, host="127.0.0.1", port=free_port())
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest_asyncio.fixture
async def trainer(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path, registry: str
) -> AsyncIterator[tuple[Trainer, str]]:
    settings = build_settings(
        nats_url=nats_url,
        database_url=fresh_database,
        artifact_root=tmp_path / "artifacts",
        admin_token=TOKEN,
        http_port=0,
        schedule_enabled=False,
        registry_url=registry,
        num_boost_round=40,
        early_stopping_rounds=20,
        cv_folds=0,
        bootstrap_resamples=20,
        min_rows=200,
        drift_enabled=False,
        # The default model keeps its spec from the settings (v1, every symbol); beta is
        # declared: v2 signals of one symbol only.
        data_specs=[{"model_name": "beta", "feature_schema_version": 2, "symbols": ["XB"]}],
    )
    app = build_trainer(settings)
    await app.start()
    try:
        yield app, f"http://127.0.0.1:{app.http.port}"
    finally:
        await app.stop()


async def _until(probe: Callable[[], Any], *, timeout: float = 90.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await probe()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def _run(client: httpx.AsyncClient, base: str, model_name: str) -> dict[str, Any]:
    started = await client.post(
        f"{base}/v1/runs", json={"model_name": model_name, "mode": "full"}, headers=AUTH
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["training_run_id"]

    async def ended() -> Any:
        run = (await client.get(f"{base}/v1/runs/{run_id}")).json()
        return run if run["status"] != "running" else None

    run: dict[str, Any] = await _until(ended, timeout=180, what=f"run of {model_name}")
    assert run["status"] == "completed", run["error"]
    return run


async def test_two_models_train_side_by_side_on_their_own_rows_of_one_stream(
    trainer: tuple[Trainer, str], nats_url: str, nats_client: NatsClient
) -> None:
    app, base = trainer
    v1 = generate(900, seed=31, n_features=N_FEATURES)
    v2 = generate(
        1400, seed=32, n_features=N_FEATURES, feature_schema_version=2, symbols=["XA", "XB"]
    )
    # One stream, the two kinds of signals interleaved.
    mixed = [pair for both in zip(v1, v2, strict=False) for pair in both] + v2[len(v1) :]
    await publish(nats_url, mixed, ensure_streams=False)
    # A v2 signal breaking its registered schema goes to the DLQ naming the feature.
    bad_signal, _ = generate(
        1, seed=33, n_features=N_FEATURES, feature_schema_version=2, symbols=["XB"]
    )[0]
    bad_features = dict(bad_signal.features) | {feature_name(3): 1e6}
    bad = bad_signal.model_copy(update={"features": bad_features})
    await nats_client.jetstream().publish(bad.subject, bad.to_json_bytes())

    async with httpx.AsyncClient(timeout=10.0) as client:

        async def ingested() -> Any:
            stats = (await client.get(f"{base}/v1/stats")).json()
            return stats["signals_with_outcome"] >= len(mixed)

        await _until(ingested, what="ingestion")

        async def dead_letter() -> Any:
            try:
                return await nats_client.jetstream().get_last_msg(
                    "HINDSIGHT_DLQ", "dlq.signal.features"
                )
            except Exception:
                return None

        msg = await _until(dead_letter, what="the schema violation in the DLQ")
        assert f"features.{feature_name(3)}" in msg.headers["Hindsight-Error"]
        assert "above max" in msg.headers["Hindsight-Error"]
        assert json.loads(msg.data)["signal_id"] == bad.signal_id
        stats = (await client.get(f"{base}/v1/stats")).json()
        assert stats["signals"] == len(mixed)  # the bad one was not written

        # A model without a data spec is refused, naming model_name; no run row.
        refused = await client.post(
            f"{base}/v1/runs", json={"model_name": "nobody", "mode": "full"}, headers=AUTH
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "model_name" and "nobody" in refused.json()["message"]

        default = await _run(client, base, app.settings.model_name)
        beta = await _run(client, base, "beta")
        assert (await client.get(f"{base}/v1/runs?model_name=nobody")).json() == []

    root = app.settings.artifact_root
    expected = {
        default["run_id"]: {s.signal_id for s, _ in v1},
        beta["run_id"]: {s.signal_id for s, _ in v2 if s.symbol == "XB"},
    }
    seen: dict[str, set[str]] = {}
    for run in (default, beta):
        directory = resolve_artifact(root, run["artifact_uri"])
        card = load_card(directory).model_dump()
        snap = card["training_snapshot"]
        rows, blocks, _ = read_snapshot(directory)
        ids = {r.signal_id for r in rows}
        seen[run["model_name"]] = ids
        print(
            f"\n{run['model_name']}: snapshot {snap['rows']} rows {snap['partitions']}"
            f" blocks {snap['blocks']}"
        )
        # Exactly the model's rows: counted in the files, in metrics.json and in the run.
        assert ids == expected[run["run_id"]]
        assert len(rows) == snap["rows"] == len(expected[run["run_id"]]) == run["dataset_size"]
        assert snap["sha256"] == snapshot_hash(directory)
        assert card["data_spec"]["model_name"] == run["model_name"]
        counts = card["row_counts"]
        assert snap["blocks"]["train"] == counts["train"]
        assert snap["blocks"]["test"] == counts["test"]
        assert blocks.count("validation") == counts["validation"]
        assert run["report"]["training_snapshot"]["sha256"] == snap["sha256"]
    assert not seen["trade_success"] & seen["beta"]
    assert len(seen["trade_success"]) == 900 and len(seen["beta"]) == 700
    beta_dir = resolve_artifact(root, beta["artifact_uri"])
    part = beta_dir / SNAPSHOT_DIR / "feature_schema_version=2" / "timeframe=1h"
    assert pq.read_table(part).num_rows == 700
    assert {r.symbol for r in read_snapshot(beta_dir)[0]} == {"XB"}


@pytest_asyncio.fixture
async def storage(fresh_database: str) -> AsyncIterator[Storage]:
    pool = await create_pool(fresh_database, schema="trainer", migrations_dir=MIGRATIONS)
    try:
        yield Storage(pool)
    finally:
        await pool.close()


def _checks(result: str) -> float:
    value: float = SCHEMA_CHECKS.labels(result)._value.get()
    return value


async def test_unknown_schema_or_unreachable_registry_keeps_the_events(
    storage: Storage, registry: str, tmp_path: Path
) -> None:
    settings = build_settings(database_url="", artifact_root=tmp_path, registry_url="")
    v1 = [s for s, _ in generate(5, seed=41, n_features=N_FEATURES)]
    before = _checks("unknown_schema")
    await Ingestor(storage, settings, schemas=RegistrySchemas(registry)).on_signals(v1)
    assert _checks("unknown_schema") - before == 5

    down = RegistrySchemas(f"http://127.0.0.1:{free_port()}")
    v2 = [s for s, _ in generate(4, seed=42, n_features=N_FEATURES, feature_schema_version=2)]
    bad = v2[0].model_copy(update={"features": {"unknown": 1.0}})
    before = _checks("registry_unreachable")
    await Ingestor(storage, settings, schemas=down).on_signals([bad, *v2[1:]])
    assert _checks("registry_unreachable") - before == 4
    assert await storage.pool.fetchval("SELECT count(*) FROM signals") == 9

    # The same event, the registry answering: refused, naming the feature; nothing written.
    checked = Ingestor(storage, settings, schemas=RegistrySchemas(registry))
    other = generate(3, seed=43, n_features=N_FEATURES, feature_schema_version=2)
    fresh_bad = other[0][0].model_copy(update={"features": {"unknown": 1.0}})
    with pytest.raises(InvalidInputError) as info:
        await checked.on_signals([other[1][0], fresh_bad, other[2][0]])
    assert info.value.field is not None and info.value.field.startswith("features.")
    assert await storage.pool.fetchval("SELECT count(*) FROM signals") == 9
    before = _checks("ok")
    await checked.on_signals([other[1][0], other[2][0]])
    assert _checks("ok") - before == 2
