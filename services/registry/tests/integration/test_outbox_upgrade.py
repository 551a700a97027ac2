"""Outbox rows queued by the previous release (partial payloads) are published unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hindsight.common.db import create_pool
from hindsight.common.events import AbCompleted, ModelDeployed
from hindsight.registry.storage import MIGRATIONS_DIR, OUTBOX, SCHEMA

pytestmark = pytest.mark.integration

SHA = "b" * 64
# What the previous release wrote: the fields of the event, without schema_version, source
# and deployment_id (its relay added them when publishing).
LEGACY = [
    (
        "model.deployed",
        {
            "model_name": "m",
            "version": "v1",
            "stage": "production",
            "artifact_uri": "models/m/v1",
            "sha256": SHA,
            "occurred_at": "2026-01-02T03:04:05+00:00",
        },
    ),
    (
        "ab.completed",
        {
            "experiment_id": "exp-1",
            "model_name": "m",
            "decision": "keep",
            "n": 4,
            "per_arm": {"control": {"n": 2.0}},
            "kind": "ab",
            "cancelled": True,
            "occurred_at": "2026-01-02T03:04:05+00:00",
        },
    ),
]


async def test_pending_rows_of_the_previous_release_become_whole_events(
    fresh_database: str, tmp_path: Path
) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for name in ("0001_initial.sql", "0002_experiments.sql"):
        shutil.copy(MIGRATIONS_DIR / name, before / name)
    pool = await create_pool(fresh_database, schema=SCHEMA, migrations_dir=before)
    try:
        for subject, payload in LEGACY:
            await pool.execute(
                "INSERT INTO outbox (subject, payload) VALUES ($1, $2)",
                subject,
                json.dumps(payload),
            )
        sent = await pool.fetchval(
            "INSERT INTO outbox (subject, payload, sent_at) VALUES ($1, $2, now()) RETURNING id",
            *(LEGACY[0][0], json.dumps(LEGACY[0][1])),
        )
    finally:
        await pool.close()

    pool = await create_pool(fresh_database, schema=SCHEMA, migrations_dir=MIGRATIONS_DIR)
    try:
        async with OUTBOX.claim(pool) as batch:
            events = [row.event() for row in batch.rows]
        deployed, ended = events
        assert isinstance(deployed, ModelDeployed) and isinstance(ended, AbCompleted)
        assert deployed.source == "registry" and deployed.schema_version == 1
        assert deployed.deployment_id == f"registry-{batch.rows[0].id}"
        assert (
            deployed.message_id() == f"model.deployed:m:v1:production:registry-{batch.rows[0].id}"
        )
        ended_body = json.loads(ended.to_json_bytes())
        assert ended_body["cancelled"] is True and ended_body["source"] == "registry"
        assert "deployment_id" not in ended_body
        untouched = await pool.fetchval("SELECT payload FROM outbox WHERE id=$1", sent)
        assert "source" not in json.loads(untouched)  # published rows stay as they were
    finally:
        await pool.close()
