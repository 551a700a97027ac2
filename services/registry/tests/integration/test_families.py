"""Family releases through the registry, in-process against real NATS JetStream and
PostgreSQL: registered, gated member by member, promoted, experimented on and rolled back
as one unit under ``model_name`` = the family."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.registry.app import RegistryApp, build_settings

from .family_release import FAMILY, family_completed, make_family
from .helpers import (
    completed,
    eventually,
    fetch_all,
    make_artifact,
    outcome,
    prediction,
    publish,
    publish_many,
)

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
        values: dict[str, Any] = {
            "nats_url": nats_url,
            "database_url": fresh_database,
            "artifact_root": tmp_path / "artifacts",
            "admin_token": TOKEN,
            "http_port": 0,
            "outbox_poll_s": 0.2,
            "max_deliveries": 2,
            "evaluate_every_s": 3600.0,
            "auto_rollback": False,
            **overrides,
        }
        app = RegistryApp(build_settings(**values))
        await app.start()
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}", timeout=10)
        apps.append((app, client))
        return app, client

    (tmp_path / "artifacts").mkdir()
    yield start
    for app, client in apps:
        await client.aclose()
        await app.stop()


async def release(
    app: RegistryApp,
    nc: NatsClient,
    client: httpx.AsyncClient,
    version: str,
    *,
    family: str = FAMILY,
    **card: Any,
) -> dict[str, Any]:
    """Write a family release, publish its training.completed; its registered version."""
    sha = make_family(app.settings.artifact_root, version, family=family, **card)
    await publish(nc, family_completed(version, sha, family=family))

    async def probe() -> dict[str, Any] | None:
        resp = await client.get(f"/v1/models/{family}/versions/{version}")
        return resp.json() if resp.status_code == 200 else None  # type: ignore[no-any-return]

    found = await eventually(probe, what=f"{family}/{version} registered")
    assert found["sha256"] == sha
    return found


async def wait_stage(client: httpx.AsyncClient, version: str, stage: str) -> None:
    async def probe() -> bool:
        resp = await client.get(f"/v1/models/{FAMILY}/versions/{version}")
        return resp.status_code == 200 and resp.json()["stage"] == stage

    await eventually(probe, what=f"{version} in {stage}")


def bodies(msgs: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in msgs]


async def test_a_family_is_gated_promoted_replaced_and_rolled_back_as_one_unit(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()

    first = await release(app, nats_client, client, "v1_0_0")
    await wait_stage(client, "v1_0_0", "production")
    assert first["kind"] == "family" and first["card"]["kind"] == "family"
    names = {g["name"] for g in first["gates"]}
    assert {"entry_H.test_roc_auc", "entry_pooled.p_range", "risk.coverage_0.7"} <= names
    assert {"rr.pinball", "entry_L.served", "not_worse_than_production"} <= names
    deployed = bodies(await fetch_all(nats_client, "model.deployed", 1))
    assert [(d["model_name"], d["version"], d["stage"]) for d in deployed] == [
        (FAMILY, "v1_0_0", "production")
    ]
    assert deployed[0]["artifact_uri"] == f"families/{FAMILY}/v1_0_0"
    assert deployed[0]["sha256"] == first["sha256"]
    assert (await client.get("/v1/deployments")).json() == [
        {
            "model_name": FAMILY,
            "version": "v1_0_0",
            "stage": "production",
            "artifact_uri": f"families/{FAMILY}/v1_0_0",
            "sha256": first["sha256"],
        }
    ]

    # One weak served member blocks the release; the version and the audit name it.
    comparison = {"version": "v1_0_0", "test": {"roc_auc": 0.66}}
    blocked = await release(
        app, nats_client, client, "v1_1_0", entry_auc={"entry_M": 0.51}, production=comparison
    )
    assert blocked["stage"] == "candidate" and not blocked["gates_passed"]
    assert [g["reason"] for g in blocked["gates"] if not g["passed"]] == [
        "member entry_M: roc_auc 0.51 < 0.55"
    ]
    resp = await client.post(
        f"/v1/models/{FAMILY}/versions/v1_1_0/promote", json={"reason": "try"}, headers=AUTH
    )
    assert resp.status_code == 409 and "member entry_M: roc_auc 0.51 < 0.55" in resp.text

    second = await release(app, nats_client, client, "v1_2_0", production=comparison)
    await wait_stage(client, "v1_2_0", "production")
    await wait_stage(client, "v1_0_0", "archived")

    resp = await client.post(
        f"/v1/models/{FAMILY}/rollback", json={"reason": "family v1_2_0 misbehaves"}, headers=AUTH
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["version"] == "v1_0_0" and resp.json()["stage"] == "production"
    await wait_stage(client, "v1_2_0", "archived")

    deployed = bodies(await fetch_all(nats_client, "model.deployed", 5))
    assert [(d["version"], d["stage"], d.get("previous_version")) for d in deployed] == [
        ("v1_0_0", "production", None),
        ("v1_2_0", "production", "v1_0_0"),
        ("v1_0_0", "retired", None),
        ("v1_0_0", "production", "v1_2_0"),
        ("v1_2_0", "retired", None),
    ]
    uris = {d["version"]: (d["artifact_uri"], d["sha256"]) for d in deployed}
    assert uris == {
        "v1_0_0": (f"families/{FAMILY}/v1_0_0", first["sha256"]),
        "v1_2_0": (f"families/{FAMILY}/v1_2_0", second["sha256"]),
    }

    audit = (await client.get(f"/v1/models/{FAMILY}/audit")).json()
    moves = [(a["action"], a["version"], a["from_stage"], a["to_stage"]) for a in audit]
    assert moves == [
        ("register", "v1_0_0", None, "candidate"),
        ("promote", "v1_0_0", "candidate", "production"),
        ("register", "v1_1_0", None, "candidate"),
        ("register", "v1_2_0", None, "candidate"),
        ("promote", "v1_0_0", "production", "archived"),
        ("promote", "v1_2_0", "candidate", "production"),
        ("rollback", "v1_2_0", "production", "archived"),
        ("rollback", "v1_0_0", "archived", "production"),
    ]
    blocked_reason = audit[2]["reason"]
    assert blocked_reason.endswith(
        "(family release); gates failed: member entry_M: roc_auc 0.51 < 0.55"
    )


async def test_a_family_release_that_does_not_match_its_card_is_refused(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    root = app.settings.artifact_root
    sha = make_family(root, "v2_0_0")
    (root / f"families/{FAMILY}/v2_0_0/risk.onnx").write_bytes(b"not the member")
    await publish(nats_client, family_completed("v2_0_0", sha))
    await wait_stage(client, "v2_0_0", "refused")
    body = (await client.get(f"/v1/models/{FAMILY}/versions/v2_0_0")).json()
    assert body["kind"] == "family" and body["card"] is None
    assert body["refused_reason"].startswith("member risk: sha256 mismatch")

    other = make_family(root, "v2_1_0")
    await publish(nats_client, family_completed("v2_1_0", "0" * 64))
    await wait_stage(client, "v2_1_0", "refused")
    body = (await client.get(f"/v1/models/{FAMILY}/versions/v2_1_0")).json()
    assert body["refused_reason"] == (
        f"sha256 mismatch: event says {'0' * 64}, metrics.json has {other}"
    )

    # One name, one kind: a single model under the family's name is refused.
    single = make_artifact(root, "20261208T000000Z-abcdef", model_name=FAMILY)
    await publish(nats_client, completed("20261208T000000Z-abcdef", single, model_name=FAMILY))
    await wait_stage(client, "20261208T000000Z-abcdef", "refused")
    body = (await client.get(f"/v1/models/{FAMILY}/versions/20261208T000000Z-abcdef")).json()
    assert body["kind"] == "model"
    assert body["refused_reason"] == f"{FAMILY} holds family versions; a model cannot join them"


async def test_a_family_experiment_is_decided_by_outcomes_of_its_predictions(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    await release(app, nats_client, client, "v1_0_0")
    await wait_stage(client, "v1_0_0", "production")
    # No comparison with production in its card: the release gate keeps it a candidate.
    await release(app, nats_client, client, "v1_1_0")
    resp = await client.post(
        "/v1/experiments",
        json={
            "model_name": FAMILY,
            "kind": "ab",
            "candidate_version": "v1_1_0",
            "min_samples_per_arm": 100,
            "auto_promote": True,
        },
        headers=AUTH,
    )
    assert resp.status_code == 201, resp.text
    eid = resp.json()["experiment_id"]

    # What the gateway logs for Predict: model_version = the family release, p = conf_pat.
    rng = np.random.default_rng(16)
    items = []
    for k in range(400):
        arm, version = ("control", "v1_0_0") if k % 2 else ("candidate", "v1_1_0")
        truth = rng.uniform(0.2, 0.8)
        p = truth if arm == "candidate" else rng.uniform(0.05, 0.95)
        signal = f"sig-{k}-{rng.integers(1 << 30)}"
        body = prediction(signal, p, version=version, experiment_id=eid, arm=arm)
        body["model_name"] = FAMILY
        items.append(("prediction.logged", body, body["prediction_id"]))
        items.append(("signal.outcome", outcome(signal, bool(rng.uniform() < truth)), signal))
    await publish_many(nats_client, items)

    async def joined() -> bool:
        live = (await client.get(f"/v1/experiments/{eid}")).json()["live"]["per_arm"]
        return {arm: m["n"] for arm, m in live.items()} == {"control": 200, "candidate": 200}

    await eventually(joined, timeout=30, what="every prediction joined to its outcome")
    resp = await client.post(f"/v1/experiments/{eid}/complete", headers=AUTH)
    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert (done["decision"], done["winner"], done["promotion"]) == ("promote", "v1_1_0", "applied")

    deployed = bodies(await fetch_all(nats_client, "model.deployed", 4))
    assert [(d["version"], d["stage"]) for d in deployed] == [
        ("v1_0_0", "production"),
        ("v1_1_0", "canary"),
        ("v1_1_0", "production"),
        ("v1_0_0", "retired"),
    ]
    assert deployed[1]["traffic"] == {"v1_0_0": 0.5, "v1_1_0": 0.5}
    assert {d["artifact_uri"] for d in deployed} == {
        f"families/{FAMILY}/v1_0_0",
        f"families/{FAMILY}/v1_1_0",
    }


async def test_two_families_with_the_same_release_version_never_share_predictions(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    for family in (FAMILY, "scalp"):
        found = await release(app, nats_client, client, "v1_0_0", family=family)
        assert found["stage"] == "production"
    items = []
    for family, n in ((FAMILY, 30), ("scalp", 10)):
        for k in range(n):
            signal = f"{family}-sig-{k}"
            body = prediction(signal, 0.6, version="v1_0_0")
            body["model_name"] = family
            items.append(("prediction.logged", body, body["prediction_id"]))
            items.append(("signal.outcome", outcome(signal, k % 2 == 0, seconds=k), signal))
    await publish_many(nats_client, items)

    seen: list[dict[str, int]] = []

    async def rolling() -> dict[str, int] | None:
        health = (await client.get("/v1/degradation")).json()["production"]
        seen.append({h["model_name"]: h["n"] for h in health})
        return seen[-1] if sum(seen[-1].values()) == 40 else None

    # Both are production v1_0_0: each one's rolling window holds only its own answers.
    try:
        got = await eventually(rolling, timeout=30, what="rolling samples")
    except AssertionError as exc:
        raise AssertionError(f"rolling samples never 40 in all: last {seen[-1:]}") from exc
    assert got == {FAMILY: 30, "scalp": 10}
