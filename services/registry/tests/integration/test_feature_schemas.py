"""Feature schemas over the registry's HTTP API, in-process against real PostgreSQL (and NATS,
which the app needs to start): register once, idempotent again, 409 on other features."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hindsight.common.feature_schema import FeatureSchema
from hindsight.registry.app import RegistryApp, build_settings
from hindsight.registry.feature_schemas import REGISTER_ACTION
from hindsight.registry.http_api import API_ACTOR

pytestmark = pytest.mark.integration

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

FEATURES: list[dict[str, Any]] = [
    {"name": "rsi", "dtype": "float", "min": 0, "max": 100, "missing": "reject"},
    {"name": "bars_since", "dtype": "int", "min": 0},
    {"name": "trend_up", "dtype": "bool", "missing": "fill:0"},
]


def _hash(features: list[dict[str, Any]]) -> str:
    return FeatureSchema.model_validate({"version": 1, "features": features}).content_hash()


@pytest.fixture
async def registry(
    fresh_database: str, nats_url: str, jetstream_reset: None, tmp_path: Path
) -> AsyncIterator[tuple[RegistryApp, httpx.AsyncClient]]:
    """The registry app on a free port over a fresh database, and a client of its HTTP API."""
    (tmp_path / "artifacts").mkdir()
    app = RegistryApp(
        build_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            artifact_root=tmp_path / "artifacts",
            admin_token=TOKEN,
            http_port=0,
            evaluate_every_s=3600.0,
        )
    )
    await app.start()
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}", timeout=10)
    try:
        yield app, client
    finally:
        await client.aclose()
        await app.stop()


async def test_register_once_then_the_same_again_is_idempotent(
    registry: tuple[RegistryApp, httpx.AsyncClient],
) -> None:
    app, client = registry
    first = await client.put("/v1/feature-schemas/3", json={"features": FEATURES}, headers=AUTH)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["version"] == 3
    assert body["content_hash"] == _hash(FEATURES)
    assert [f["name"] for f in body["features"]] == ["rsi", "bars_since", "trend_up"]
    assert body["features"][0] == {
        "name": "rsi", "dtype": "float", "min": 0.0, "max": 100.0, "missing": "reject"
    }  # fmt: skip
    assert body["features"][2]["missing"] == "fill:0.0"
    assert body["created_by"] == API_ACTOR

    # The same declaration written another way (key order, spelled-out defaults, version in
    # the body): 200, the stored row unchanged, no second audit row.
    again = [
        {"missing": "reject", "max": 100.0, "min": 0.0, "dtype": "float", "name": "rsi"},
        {"name": "bars_since", "dtype": "int", "min": 0, "max": None, "missing": "allow"},
        {"name": "trend_up", "dtype": "bool", "missing": "fill:0.0"},
    ]
    second = await client.put(
        "/v1/feature-schemas/3", json={"version": 3, "features": again}, headers=AUTH
    )
    assert second.status_code == 200, second.text
    assert second.json() == body

    got = await client.get("/v1/feature-schemas/3")
    assert got.status_code == 200
    assert got.json() == body
    audit = await app.store.tables.audit.of_feature_schema(3)
    assert [(a.actor, a.action, a.feature_schema_version) for a in audit] == [
        (API_ACTOR, REGISTER_ACTION, 3)
    ]
    assert body["content_hash"] in audit[0].reason
    # A schema row is no model's: the model audit of the API does not list it.
    assert (await client.get("/v1/models/rsi/audit")).status_code == 404


async def test_other_features_under_a_registered_version_are_a_conflict(
    registry: tuple[RegistryApp, httpx.AsyncClient],
) -> None:
    app, client = registry
    assert (
        await client.put("/v1/feature-schemas/1", json={"features": FEATURES}, headers=AUTH)
    ).status_code == 201
    for other in (
        list(reversed(FEATURES)),  # order matters
        [*FEATURES[:2], {**FEATURES[2], "missing": "allow"}],
        FEATURES[:2],
    ):
        resp = await client.put("/v1/feature-schemas/1", json={"features": other}, headers=AUTH)
        assert resp.status_code == 409, resp.text
        message = resp.json()["message"]
        assert "version 1" in message
        assert _hash(FEATURES) in message and _hash(other) in message
    assert (await client.get("/v1/feature-schemas/1")).json()["content_hash"] == _hash(FEATURES)
    assert len(await app.store.tables.audit.of_feature_schema(1)) == 1


async def test_two_producers_racing_for_one_version_get_one_winner(
    registry: tuple[RegistryApp, httpx.AsyncClient],
) -> None:
    _, client = registry
    mine, theirs = FEATURES, [{"name": "atr"}]
    answers = await asyncio.gather(
        *(
            client.put("/v1/feature-schemas/7", json={"features": f}, headers=AUTH)
            for f in (mine, theirs, mine, theirs)
        )
    )
    # The first insert wins; its twin is the same content (200), the other two are 409.
    assert sorted(a.status_code for a in answers) == [200, 201, 409, 409]
    winner = (await client.get("/v1/feature-schemas/7")).json()["content_hash"]
    assert winner in (_hash(mine), _hash(theirs))
    for answer in answers:
        if answer.status_code == 409:
            assert winner in answer.json()["message"]
        else:
            assert answer.json()["content_hash"] == winner


async def test_writes_need_the_token(registry: tuple[RegistryApp, httpx.AsyncClient]) -> None:
    _, client = registry
    body = {"features": FEATURES}
    assert (await client.put("/v1/feature-schemas/1", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.put("/v1/feature-schemas/1", json=body, headers=wrong)).status_code == 401
    assert (await client.get("/v1/feature-schemas/1")).status_code == 404
    assert (await client.get("/v1/feature-schemas")).json() == []


@pytest.mark.parametrize(
    ("path", "body", "loc", "says"),
    [
        ("1", {"features": []}, ["body", "features"], "at least 1 item"),
        (
            "1",
            {"features": [{"name": "a"}, {"name": "a"}]},
            ["body", "features"],
            "features[1].name: 'a' is declared twice",
        ),
        ("1", {"features": [{"name": "a", "dtype": "str"}]}, ["body", "features", 0, "dtype"], ""),
        ("1", {"features": [{"name": "a", "min": 1, "max": 0}]}, ["body", "features", 0], "min"),
        (
            "1",
            {"features": [{"name": "a", "missing": "drop"}]},
            ["body", "features", 0, "missing"],
            "'allow', 'reject' or 'fill:<number>'",
        ),
        ("1", {"features": [{"name": "a", "unit": "x"}]}, ["body", "features", 0, "unit"], ""),
        ("0", {"features": [{"name": "a"}]}, ["path", "version"], "greater than or equal to 1"),
        ("v1", {"features": [{"name": "a"}]}, ["path", "version"], ""),
    ],
)
async def test_a_bad_declaration_is_422_naming_the_field(
    registry: tuple[RegistryApp, httpx.AsyncClient],
    path: str,
    body: dict[str, Any],
    loc: list[Any],
    says: str,
) -> None:
    _, client = registry
    resp = await client.put(f"/v1/feature-schemas/{path}", json=body, headers=AUTH)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"][0]
    assert detail["loc"] == loc
    assert says in detail["msg"]
    assert (await client.get("/v1/feature-schemas")).json() == []


async def test_a_body_version_other_than_the_path_is_422_naming_version(
    registry: tuple[RegistryApp, httpx.AsyncClient],
) -> None:
    _, client = registry
    resp = await client.put(
        "/v1/feature-schemas/2", json={"version": 3, "features": FEATURES}, headers=AUTH
    )
    assert resp.status_code == 422
    assert resp.json()["field"] == "version"


async def test_the_list_is_ordered_by_version(
    registry: tuple[RegistryApp, httpx.AsyncClient],
) -> None:
    _, client = registry
    for version in (12, 2, 7):
        features = [{"name": f"f{version}"}]
        resp = await client.put(
            f"/v1/feature-schemas/{version}", json={"features": features}, headers=AUTH
        )
        assert resp.status_code == 201
    listed = (await client.get("/v1/feature-schemas")).json()
    assert [s["version"] for s in listed] == [2, 7, 12]
    assert [s["features"][0]["name"] for s in listed] == ["f2", "f7", "f12"]
