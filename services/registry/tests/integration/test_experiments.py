"""Experiments, outcome-joined evaluation and the degradation monitor, in-process against
real NATS JetStream and PostgreSQL (events published with a plain NATS client)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.registry.app import RegistryApp, build_settings

from .helpers import (
    MODEL,
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


async def production_of(client: httpx.AsyncClient) -> str | None:
    for row in (await client.get("/v1/models")).json():
        if row["model_name"] == MODEL:
            return row["production_version"]  # type: ignore[no-any-return]
    return None


async def register(
    app: RegistryApp, nc: NatsClient, client: httpx.AsyncClient, version: str, **card: Any
) -> None:
    sha = make_artifact(app.settings.artifact_root, version, **card)
    await publish(nc, completed(version, sha))

    async def probe() -> bool:
        resp = await client.get(f"/v1/models/{MODEL}/versions")
        return resp.status_code == 200 and any(r["version"] == version for r in resp.json())

    await eventually(probe, what=f"{version} registered")


async def setup_v1_v2(app: RegistryApp, nc: NatsClient, client: httpx.AsyncClient) -> None:
    """v1 production; v2 a candidate (its card has no comparison with v1: gates fail)."""
    await register(app, nc, client, "v1")
    await eventually(lambda: _is(client, "v1"), what="v1 production")
    await register(app, nc, client, "v2")


async def _is(client: httpx.AsyncClient, version: str) -> bool:
    return await production_of(client) == version


def arm_data(rng: np.random.Generator, n: int, *, informative: bool) -> list[tuple[float, bool]]:
    """(p_success, win) pairs: outcomes drawn from true probabilities q."""
    q = rng.uniform(0.2, 0.8, n)
    wins = rng.uniform(size=n) < q
    if informative:
        p = np.clip(q + rng.normal(0, 0.05, n), 0.01, 0.99)
    else:
        p = rng.uniform(0.05, 0.95, n)  # uninformative, badly calibrated
    return [(float(a), bool(b)) for a, b in zip(p, wins, strict=True)]


async def feed_experiment(
    nc: NatsClient,
    experiment_id: str,
    arms: dict[str, tuple[str, list[tuple[float, bool]]]],
) -> None:
    """prediction.logged per arm, then signal.outcome for every signal."""
    items = []
    k = 0
    for arm, (version, data) in arms.items():
        for p, win in data:
            signal = f"sig-{uuid.uuid4().hex[:12]}"
            body = prediction(signal, p, version=version, experiment_id=experiment_id, arm=arm)
            items.append(("prediction.logged", body, body["prediction_id"]))
            items.append(("signal.outcome", outcome(signal, win, seconds=k), signal))
            k += 1
    await publish_many(nc, items)


async def wait_samples(client: httpx.AsyncClient, experiment_id: str, n: dict[str, int]) -> Any:
    async def probe() -> Any:
        body = (await client.get(f"/v1/experiments/{experiment_id}")).json()
        got = {arm: m["n"] for arm, m in body["live"]["per_arm"].items()}
        return body if got == n else None

    return await eventually(probe, timeout=30, what=f"samples {n}")


def bodies(msgs: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in msgs]


async def start_ab(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    resp = await client.post(
        "/v1/experiments",
        json={"model_name": MODEL, "kind": "ab", "candidate_version": "v2", **extra},
        headers=AUTH,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def test_ab_where_b_is_better_promotes(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    await setup_v1_v2(app, nats_client, client)
    exp = await start_ab(client, auto_promote=True)
    eid = exp["experiment_id"]
    assert exp["state"] == "active" and exp["candidate_share"] == 0.5
    assert exp["control_version"] == "v1" and exp["auto_promote"] is True

    canary = bodies(await fetch_all(nats_client, "model.deployed", 2))[1]
    assert (canary["version"], canary["stage"], canary["experiment_id"]) == ("v2", "canary", eid)
    assert canary["traffic"] == {"v1": 0.5, "v2": 0.5}

    rng = np.random.default_rng(20261121)
    await feed_experiment(
        nats_client,
        eid,
        {
            "control": ("v1", arm_data(rng, 400, informative=False)),
            "candidate": ("v2", arm_data(rng, 400, informative=True)),
        },
    )
    live = await wait_samples(client, eid, {"control": 400, "candidate": 400})
    assert (
        live["live"]["per_arm"]["candidate"]["brier"] < live["live"]["per_arm"]["control"]["brier"]
    )

    resp = await client.post(f"/v1/experiments/{eid}/complete", headers=AUTH)
    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert done["state"] == "completed" and done["decision"] == "promote"
    assert done["winner"] == "v2" and done["p_value"] < 0.05
    assert done["promotion"] == "applied"
    assert await production_of(client) == "v2"

    ab = bodies(await fetch_all(nats_client, "ab.completed", 1))[0]
    assert ab["experiment_id"] == eid and ab["decision"] == "promote" and ab["winner"] == "v2"
    assert ab["p_value"] < 0.05 and ab["n"] == 800
    assert ab["per_arm"]["candidate"]["n"] == 400
    assert ab["per_arm"]["candidate"]["brier"] < ab["per_arm"]["control"]["brier"]
    assert 0.6 < ab["per_arm"]["candidate"]["roc_auc"] and ab["per_arm"]["control"]["roc_auc"] < 0.6

    deployed = bodies(await fetch_all(nats_client, "model.deployed", 4))
    assert [(d["version"], d["stage"], d.get("previous_version")) for d in deployed] == [
        ("v1", "production", None),
        ("v2", "canary", None),
        ("v2", "production", "v1"),
        ("v1", "retired", None),
    ]
    actions = [
        (a["action"], a["version"], a["from_state"], a["to_state"], a["experiment_id"])
        for a in (await client.get(f"/v1/models/{MODEL}/audit")).json()
        if a["experiment_id"]
    ]
    assert actions == [
        ("experiment_start", "v2", None, "active", eid),
        ("experiment_complete", "v2", "active", "completed", eid),
        ("promote", "v1", None, None, eid),
        ("promote", "v2", None, None, eid),
    ]
    # the decision is final
    again = await client.post(f"/v1/experiments/{eid}/complete", headers=AUTH)
    assert again.status_code == 409


async def test_evaluator_decides_and_approval_promotes(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry(evaluate_every_s=0.3)
    await setup_v1_v2(app, nats_client, client)
    exp = await start_ab(client, min_samples_per_arm=100)  # auto_promote: settings (off)
    eid = exp["experiment_id"]
    assert exp["auto_promote"] is False
    rng = np.random.default_rng(7)
    await feed_experiment(
        nats_client,
        eid,
        {
            "control": ("v1", arm_data(rng, 150, informative=False)),
            "candidate": ("v2", arm_data(rng, 150, informative=True)),
        },
    )

    async def decided() -> Any:
        body = (await client.get(f"/v1/experiments/{eid}")).json()
        return body if body["state"] == "completed" else None

    done = await eventually(decided, timeout=30, what="evaluator completes")
    assert done["decision"] == "promote" and done["ended_by"] == "registry:evaluator"
    assert done["promotion"] == "pending" and await production_of(client) == "v1"
    listed = (await client.get("/v1/experiments", params={"state": "completed"})).json()
    assert [e["experiment_id"] for e in listed] == [eid]

    assert (await client.post(f"/v1/experiments/{eid}/approve")).status_code == 401
    resp = await client.post(f"/v1/experiments/{eid}/approve", headers=AUTH, json={"reason": "ok"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["promotion"] == "applied" and await production_of(client) == "v2"
    assert (await client.post(f"/v1/experiments/{eid}/approve", headers=AUTH)).status_code == 409
    deployed = bodies(await fetch_all(nats_client, "model.deployed", 4))
    assert [(d["version"], d["stage"]) for d in deployed[2:]] == [
        ("v2", "production"),
        ("v1", "retired"),
    ]


@pytest.mark.parametrize(
    ("n", "control_informative", "reason"),
    [(400, True, "no significant"), (100, False, "minimum sample")],
    ids=["equal-arms", "below-minimum"],
)
async def test_inconclusive(
    start_registry: Start,
    nats_client: NatsClient,
    n: int,
    control_informative: bool,
    reason: str,
) -> None:
    app, client = await start_registry()
    await setup_v1_v2(app, nats_client, client)
    eid = (await start_ab(client, auto_promote=True))["experiment_id"]
    rng = np.random.default_rng(11)
    await feed_experiment(
        nats_client,
        eid,
        {
            "control": ("v1", arm_data(rng, n, informative=control_informative)),
            "candidate": ("v2", arm_data(rng, n, informative=True)),
        },
    )
    await wait_samples(client, eid, {"control": n, "candidate": n})
    done = (await client.post(f"/v1/experiments/{eid}/complete", headers=AUTH)).json()
    assert done["decision"] == "inconclusive" and done["winner"] is None
    assert reason in done["result"]["test"]["reason"]
    if n == 100:  # truly better, but too few outcomes to decide
        assert done["p_value"] < 0.05
    else:
        assert done["p_value"] >= 0.05
    ab = bodies(await fetch_all(nats_client, "ab.completed", 1))[0]
    assert ab["decision"] == "inconclusive" and "winner" not in ab and ab["n"] == 2 * n
    assert await production_of(client) == "v1"


async def test_experiment_state_machine_via_api(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry()
    await setup_v1_v2(app, nats_client, client)
    body = {"model_name": MODEL, "kind": "canary", "candidate_version": "v2"}
    assert (await client.post("/v1/experiments", json=body)).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert (await client.post("/v1/experiments", json=body, headers=bad)).status_code == 401
    share = await client.post(
        "/v1/experiments", json={**body, "candidate_share": 1.5}, headers=AUTH
    )
    assert share.status_code == 422
    prod = await client.post(
        "/v1/experiments", json={**body, "candidate_version": "v1"}, headers=AUTH
    )
    assert prod.status_code == 409
    unknown = await client.post(
        "/v1/experiments", json={**body, "candidate_version": "v9"}, headers=AUTH
    )
    assert unknown.status_code == 404

    resp = await client.post("/v1/experiments", json=body, headers=AUTH)
    assert resp.status_code == 201
    eid = resp.json()["experiment_id"]
    assert resp.json()["candidate_share"] == 0.1
    second = await client.post("/v1/experiments", json={**body, "kind": "ab"}, headers=AUTH)
    assert second.status_code == 409
    assert (await client.post(f"/v1/experiments/{eid}/cancel")).status_code == 401
    assert (await client.post(f"/v1/experiments/{eid}/approve", headers=AUTH)).status_code == 409

    cancelled = await client.post(
        f"/v1/experiments/{eid}/cancel", headers=AUTH, json={"reason": "wrong build"}
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["decision"] == "keep"
    for action in ("cancel", "complete", "approve"):
        resp = await client.post(f"/v1/experiments/{eid}/{action}", headers=AUTH)
        assert resp.status_code == 409, action
    ab = bodies(await fetch_all(nats_client, "ab.completed", 1))[0]
    assert ab["experiment_id"] == eid and ab["decision"] == "keep" and ab["cancelled"] is True

    # a shadow experiment next; a production change outside it cancels it
    resp = await client.post("/v1/experiments", json={**body, "kind": "shadow"}, headers=AUTH)
    assert resp.status_code == 201
    shadow_id = resp.json()["experiment_id"]
    assert resp.json()["candidate_share"] is None
    deployed = bodies(await fetch_all(nats_client, "model.deployed", 3))
    canary, shadow = deployed[1], deployed[2]
    assert canary["stage"] == "canary" and canary["traffic"] == {"v1": 0.9, "v2": 0.1}
    assert shadow["stage"] == "shadow" and shadow["experiment_id"] == shadow_id
    assert "traffic" not in shadow

    active = (await client.get("/v1/experiments", params={"state": "active"})).json()
    assert [e["experiment_id"] for e in active] == [shadow_id]
    assert len((await client.get("/v1/experiments", params={"model_name": MODEL})).json()) == 2
    bad_state = await client.get("/v1/experiments", params={"state": "nope"})
    assert bad_state.status_code == 422
    assert (await client.get("/v1/experiments/exp-unknown")).status_code == 404

    await register(app, nats_client, client, "v3")
    resp = await client.post(
        f"/v1/models/{MODEL}/versions/v3/promote",
        json={"reason": "hotfix", "force": True},
        headers=AUTH,
    )
    assert resp.status_code == 200
    got = (await client.get(f"/v1/experiments/{shadow_id}")).json()
    assert got["state"] == "cancelled" and "production changed to v3" in got["end_reason"]
    assert [a["action"] for a in got["audit"]] == ["experiment_start", "experiment_cancel"]
    ab = bodies(await fetch_all(nats_client, "ab.completed", 2))
    assert ab[1]["experiment_id"] == shadow_id and ab[1]["cancelled"] is True


async def test_degradation_rolls_back_to_previous_production(
    start_registry: Start, nats_client: NatsClient
) -> None:
    app, client = await start_registry(
        auto_rollback=True, evaluate_every_s=3600.0, degradation_debounce_s=0.1
    )
    await register(app, nats_client, client, "v1", win_rate=0.6, brier=0.21)
    await eventually(lambda: _is(client, "v1"), what="v1 production")
    await register(
        app,
        nats_client,
        client,
        "v2",
        win_rate=0.62,
        brier=0.20,
        production={"version": "v1", "test": {"roc_auc": 0.69}},
    )
    await eventually(lambda: _is(client, "v2"), what="v2 production")

    rng = np.random.default_rng(3)
    wins = rng.uniform(size=60) < 0.2  # far below the card's 0.62

    def feed(start: int, stop: int) -> list[tuple[str, dict[str, Any], str]]:
        items = []
        for i in range(start, stop):
            signal = f"deg-{i}"
            body = prediction(signal, 0.62, version="v2")
            items.append(("prediction.logged", body, body["prediction_id"]))
            items.append(("signal.outcome", outcome(signal, bool(wins[i]), seconds=i), signal))
        # fallbacks and experiment arms of v2 are not production's own answers
        fb = prediction(f"deg-{start}", 0.5, version=None, fallback=True)
        items.append(("prediction.logged", fb, fb["prediction_id"]))
        return items

    async def rolling_n(expected: int) -> Any:
        body = (await client.get("/v1/degradation")).json()
        rows = [r for r in body["production"] if r["version"] == "v2"]
        return rows[0] if rows and rows[0]["n"] == expected else None

    # 40 bad outcomes: fewer than the window of 50, nothing may happen
    await publish_many(nats_client, feed(0, 40))
    # Two durable consumers ingest them (predictions in batches): on a busy machine that
    # takes more than the default 15 s.
    seen = await eventually(lambda: rolling_n(40), timeout=60, what="40 outcomes")
    assert seen["enough"] is False and seen["win_rate"] < 0.4
    assert await production_of(client) == "v2"

    await publish_many(nats_client, feed(40, 60))
    await eventually(lambda: _is(client, "v1"), timeout=60, what="rollback to v1")

    audit = (await client.get(f"/v1/models/{MODEL}/audit")).json()
    rollback = [a for a in audit if a["actor"] == "registry:degradation"]
    assert [(a["version"], a["from_stage"], a["to_stage"]) for a in rollback] == [
        ("v2", "production", "archived"),
        ("v1", "archived", "production"),
    ]
    assert "rolling win rate" in rollback[-1]["reason"] and "0.620" in rollback[-1]["reason"]
    deployed = bodies(await fetch_all(nats_client, "model.deployed", 5))
    assert [(d["version"], d["stage"], d.get("previous_version")) for d in deployed[3:]] == [
        ("v1", "production", "v2"),
        ("v2", "retired", None),
    ]
    degradation = (await client.get("/v1/degradation")).json()
    assert [(r["version"], r["rolled_back_to"]) for r in degradation["rollbacks"]] == [("v2", "v1")]
    metrics = (await client.get("/metrics")).text
    assert f'hindsight_registry_degradation_rollbacks_total{{model_name="{MODEL}"}}' in metrics
    assert 'hindsight_registry_rolling_win_rate{model_name="trade_success",version="v2"}' in metrics
