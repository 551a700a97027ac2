"""The registry in-process against real NATS JetStream and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import DLQ_STREAM, create_broker
from hindsight.common.outbox import OutboxRelay
from hindsight.registry.app import RegistryApp, build_settings
from hindsight.registry.messaging import publisher
from hindsight.registry.storage import OUTBOX

from .helpers import MODEL, completed, eventually, fetch_all, make_artifact, publish

pytestmark = pytest.mark.integration

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Start = Callable[..., Awaitable[tuple[RegistryApp, httpx.AsyncClient]]]


@pytest.fixture
async def start_registry(
    fresh_database: str, nats_url: str, jetstream_reset: None, tmp_path: Path
) -> AsyncIterator[Start]:
    """Start the registry app (free port, tmp artifact root) with optional overrides."""
    apps: list[tuple[RegistryApp, httpx.AsyncClient]] = []

    async def start(**overrides: Any) -> tuple[RegistryApp, httpx.AsyncClient]:
        settings = build_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            artifact_root=tmp_path / "artifacts",
            admin_token=TOKEN,
            http_port=0,
            outbox_poll_s=0.2,
            max_deliveries=2,
            **overrides,
        )
        app = RegistryApp(settings)
        await app.start()
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}", timeout=10)
        apps.append((app, client))
        return app, client

    (tmp_path / "artifacts").mkdir()
    yield start
    for app, client in apps:
        await client.aclose()
        await app.stop()


def root_of(app: RegistryApp) -> Path:
    return app.settings.artifact_root


async def stage_of(client: httpx.AsyncClient, version: str) -> str | None:
    resp = await client.get(f"/v1/models/{MODEL}/versions")
    if resp.status_code == 404:
        return None
    for row in resp.json():
        if row["version"] == version:
            return str(row["stage"])
    return None


async def wait_stage(client: httpx.AsyncClient, version: str, stage: str) -> None:
    async def probe() -> bool:
        return await stage_of(client, version) == stage

    await eventually(probe, what=f"{version} in {stage}")


def deployed(msgs: list[Any]) -> list[tuple[str, str, str | None]]:
    out = []
    for m in msgs:
        body = json.loads(m.data)
        out.append((body["version"], body["stage"], body.get("previous_version")))
    return out


async def test_register_promote_replace_and_roll_back(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    assert (await client.get("/readyz")).status_code == 200
    root = root_of(app)

    sha1 = make_artifact(root, "v1")
    await publish(nats_client, completed("v1", sha1))
    await wait_stage(client, "v1", "production")
    msgs = await fetch_all(nats_client, "model.deployed", 1)
    assert deployed(msgs) == [("v1", "production", None)]
    first = json.loads(msgs[0].data)
    assert first["artifact_uri"] == f"models/{MODEL}/v1" and first["sha256"] == sha1
    deployments = (await client.get("/v1/deployments")).json()
    assert deployments == [
        {
            "model_name": MODEL,
            "version": "v1",
            "stage": "production",
            "artifact_uri": f"models/{MODEL}/v1",
            "sha256": sha1,
        }
    ]

    sha2 = make_artifact(
        root, "v2", roc_auc=0.72, production={"version": "v1", "test": {"roc_auc": 0.70}}
    )
    await publish(nats_client, completed("v2", sha2))
    await wait_stage(client, "v2", "production")
    assert await stage_of(client, "v1") == "archived"
    msgs = await fetch_all(nats_client, "model.deployed", 3)
    assert deployed(msgs)[1:] == [("v2", "production", "v1"), ("v1", "retired", None)]

    resp = await client.post(
        f"/v1/models/{MODEL}/rollback", json={"reason": "v2 degrades"}, headers=AUTH
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == "v1" and resp.json()["stage"] == "production"
    assert await stage_of(client, "v2") == "archived"
    msgs = await fetch_all(nats_client, "model.deployed", 5)
    assert deployed(msgs)[3:] == [("v1", "production", "v2"), ("v2", "retired", None)]
    assert (await client.get("/v1/deployments")).json()[0]["version"] == "v1"

    audit = (await client.get(f"/v1/models/{MODEL}/audit")).json()
    moves = [(a["version"], a["from_stage"], a["to_stage"], a["actor"]) for a in audit]
    assert moves[-2:] == [
        ("v2", "production", "archived", "api:admin"),
        ("v1", "archived", "production", "api:admin"),
    ]
    assert all("v2 degrades" in a["reason"] for a in audit[-2:])
    assert ("v1", "candidate", "production", "registry:auto") in moves

    # Nothing earlier than v1 (v2 was rolled back out): a second rollback conflicts.
    again = await client.post(
        f"/v1/models/{MODEL}/rollback", json={"reason": "again"}, headers=AUTH
    )
    assert again.status_code == 409

    detail = (await client.get(f"/v1/models/{MODEL}/versions/v2")).json()
    assert detail["card"]["onnx_sha256"] == sha2
    assert detail["metrics"]["test_roc_auc"] == 0.72
    assert detail["recommendation"] == "PROMOTE"
    metrics = (await client.get("/metrics")).text
    assert "hindsight_registry_rollbacks_total" in metrics
    status = (await client.get("/v1/status")).json()
    assert status["versions_by_stage"]["production"] == 1
    assert status["versions_by_stage"]["archived"] == 1
    assert {r["training_run_id"] for r in status["last_runs"]} == {"run-v1", "run-v2"}
    assert status["dataset_sizes"][0]["dataset_size"] == 20000


async def test_sha256_mismatch_is_refused_and_never_promotable(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    make_artifact(root_of(app), "bad")
    await publish(nats_client, completed("bad", "0" * 64))
    await wait_stage(client, "bad", "refused")
    row = (await client.get(f"/v1/models/{MODEL}/versions/bad")).json()
    assert "sha256 mismatch" in row["refused_reason"]
    audit = (await client.get(f"/v1/models/{MODEL}/audit")).json()
    assert audit[-1]["to_stage"] == "refused" and "sha256 mismatch" in audit[-1]["reason"]
    resp = await client.post(
        f"/v1/models/{MODEL}/versions/bad/promote",
        json={"reason": "try", "force": True},
        headers=AUTH,
    )
    assert resp.status_code == 409
    assert (await client.get("/v1/deployments")).json() == []


async def test_artifact_outside_the_root_is_dead_lettered(
    start_registry: Start, nats_client: NatsClient
) -> None:
    _, client = await start_registry()
    body = completed("evil", "a" * 64, artifact_uri="../../etc")
    await publish(nats_client, body)
    dead = await fetch_all(nats_client, "dlq.training.completed", 1, stream=DLQ_STREAM)
    assert len(dead) == 1
    assert "artifact_uri" in dead[0].headers["Hindsight-Error"]
    assert (await client.get(f"/v1/models/{MODEL}/versions")).status_code == 404


async def test_same_event_twice_gives_one_version_and_runs_are_recorded(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    sha = make_artifact(root_of(app), "v1")
    body = completed("v1", sha)
    await publish(nats_client, body, msg_id="first")
    await publish(nats_client, body, msg_id="second")  # delivered twice: dedupe is ours
    failed = {**completed("x", sha), "training_run_id": "run-failed", "status": "failed"}
    for key in ("version", "artifact_uri", "sha256"):
        failed.pop(key)
    failed["error"] = "data quality gate failed"
    skipped = {**failed, "training_run_id": "run-skipped", "status": "skipped", "error": "few"}
    await publish(nats_client, failed)
    await publish(nats_client, skipped)

    async def runs() -> list[Any] | None:
        got = (await client.get("/v1/status")).json()["last_runs"]
        return got if len(got) == 3 else None

    last = await eventually(runs, what="three runs")
    assert {r["status"] for r in last} == {"completed", "failed", "skipped"}
    await wait_stage(client, "v1", "production")
    versions = (await client.get(f"/v1/models/{MODEL}/versions")).json()
    assert [v["version"] for v in versions] == ["v1"]
    audit = (await client.get(f"/v1/models/{MODEL}/audit")).json()
    assert [a["to_stage"] for a in audit] == ["candidate", "production"]
    assert len(await fetch_all(nats_client, "model.deployed", 2, timeout=2)) == 1


async def test_write_api_needs_the_token_and_validates_names(start_registry: Start) -> None:
    _, client = await start_registry()
    url = f"/v1/models/{MODEL}/versions/v1/promote"
    assert (await client.post(url, json={"reason": "x"})).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post(url, json={"reason": "x"}, headers=wrong)).status_code == 401
    rollback = f"/v1/models/{MODEL}/rollback"
    assert (await client.post(rollback, json={"reason": "x"})).status_code == 401
    assert (await client.post(url, json={"reason": "x"}, headers=AUTH)).status_code == 404
    bad = await client.post(
        f"/v1/models/{MODEL}/versions/bad%20version/promote", json={"reason": "x"}, headers=AUTH
    )
    assert bad.status_code == 422 and bad.json()["field"] == "version"
    bad_name = await client.get("/v1/models/b@d/versions")
    assert bad_name.status_code == 422 and bad_name.json()["field"] == "model_name"
    assert (await client.get(f"/v1/models/{MODEL}/versions/nope")).status_code == 404
    nothing = await client.post(rollback, json={"reason": "x"}, headers=AUTH)
    assert nothing.status_code == 409


async def test_manual_approval_waits_in_staging(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry(manual_approval=True)
    sha = make_artifact(root_of(app), "v1")
    await publish(nats_client, completed("v1", sha))
    await wait_stage(client, "v1", "staging")
    assert (await client.get("/v1/deployments")).json() == []
    resp = await client.post(
        f"/v1/models/{MODEL}/versions/v1/promote", json={"reason": "approved"}, headers=AUTH
    )
    assert resp.status_code == 200 and resp.json()["stage"] == "production"
    msgs = await fetch_all(nats_client, "model.deployed", 1)
    assert deployed(msgs) == [("v1", "production", None)]
    audit = (await client.get(f"/v1/models/{MODEL}/audit")).json()
    assert [(a["to_stage"], a["actor"]) for a in audit] == [
        ("candidate", "registry:auto"),
        ("staging", "registry:auto"),
        ("production", "api:admin"),
    ]


async def test_failed_gates_keep_a_candidate_until_forced(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    sha = make_artifact(root_of(app), "weak", roc_auc=0.52, recommendation="REJECT")
    await publish(nats_client, completed("weak", sha))
    await wait_stage(client, "weak", "candidate")
    row = (await client.get(f"/v1/models/{MODEL}/versions/weak")).json()
    failing = {g["name"] for g in row["gates"] if not g["passed"]}
    assert failing == {"test_roc_auc", "recommendation"} and not row["gates_passed"]
    url = f"/v1/models/{MODEL}/versions/weak/promote"
    refused = await client.post(url, json={"reason": "want it"}, headers=AUTH)
    assert refused.status_code == 409 and "force" in refused.json()["message"]
    forced = await client.post(url, json={"reason": "want it", "force": True}, headers=AUTH)
    assert forced.status_code == 200 and forced.json()["stage"] == "production"
    audit = (await client.get(f"/v1/models/{MODEL}/audit")).json()
    assert "forced past failed gates" in audit[-1]["reason"]
    archive = await client.post(f"/v1/models/{MODEL}/versions/weak/archive", headers=AUTH)
    assert archive.status_code == 409  # production: roll back or replace first


async def test_outbox_keeps_events_committed_while_the_relay_is_down(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry(manual_approval=True)
    sha = make_artifact(root_of(app), "v1")
    await publish(nats_client, completed("v1", sha))
    await wait_stage(client, "v1", "staging")
    await app.relay.stop()  # as if the process died right after the commit
    resp = await client.post(
        f"/v1/models/{MODEL}/versions/v1/promote", json={"reason": "approved"}, headers=AUTH
    )
    assert resp.status_code == 200
    assert (await client.get("/v1/status")).json()["outbox_pending"] == 1
    assert await fetch_all(nats_client, "model.deployed", 1, timeout=1) == []

    # A relay whose NATS is unreachable records the failure and keeps the row.
    offline = create_broker(build_settings(nats_url="nats://127.0.0.1:1"), client_name="off")
    assert await OutboxRelay(OUTBOX, app.store, publisher(offline), poll_s=1).drain() == 0
    row = await app.store.connected().fetchrow("SELECT attempts, last_error, sent_at FROM outbox")
    assert row["attempts"] == 1 and row["last_error"] and row["sent_at"] is None

    await app.relay.start()  # the next start relays what was committed
    msgs = await fetch_all(nats_client, "model.deployed", 1)
    assert deployed(msgs) == [("v1", "production", None)]
    assert msgs[0].headers["Nats-Msg-Id"].startswith(f"model.deployed:{MODEL}:v1:production:")

    async def drained() -> bool:
        return (await client.get("/v1/status")).json()["outbox_pending"] == 0

    await eventually(drained, what="outbox drained")
