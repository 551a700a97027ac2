"""The operator endpoints and the error mapping, over ASGI in-process and a real port."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from fastapi import FastAPI

from hindsight.common.errors import InvalidInputError, NotFoundError, UnavailableError
from hindsight.common.http import HttpServer, Readiness, create_http_app
from hindsight.common.logs import JsonFormatter

pytestmark = pytest.mark.unit


def _app(readiness: Readiness) -> FastAPI:
    app = create_http_app(service="testsvc", readiness=readiness)

    @app.get("/v1/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        if name == "bad":
            raise InvalidInputError("must not be 'bad'", field="name")
        if name == "missing":
            raise NotFoundError("no such thing")
        if name == "down":
            raise UnavailableError("database is down")
        return {"name": name}

    return app


async def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_healthz_and_metrics() -> None:
    async with await _client(_app(Readiness("testsvc"))) as client:
        health = await client.get("/healthz")
        metrics = await client.get("/metrics")
    assert health.status_code == 200 and health.json()["service"] == "testsvc"
    assert metrics.status_code == 200
    assert 'hindsight_build_info{service="testsvc",version="0.1.0"} 1.0' in metrics.text


async def test_readyz_reports_each_check() -> None:
    readiness = Readiness("testsvc", timeout=0.2)
    state = {"db": False}

    async def db() -> None:
        if not state["db"]:
            raise ConnectionError("connection refused")

    async def slow() -> None:
        await asyncio.sleep(0) if state["db"] else await asyncio.sleep(5)

    readiness.register("database", db)
    readiness.register("nats", slow)
    async with await _client(_app(readiness)) as client:
        down = await client.get("/readyz")
        state["db"] = True
        up = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    assert down.status_code == 503
    assert down.json()["checks"] == {
        "database": "ConnectionError: connection refused",
        "nats": "timed out after 0.2s",
    }
    assert up.status_code == 200 and up.json()["checks"] == {"database": "ok", "nats": "ok"}
    assert 'hindsight_ready{service="testsvc"} 1.0' in metrics


@pytest.mark.parametrize(
    ("name", "status", "body"),
    [
        (
            "bad",
            422,
            {"error": "InvalidInputError", "field": "name", "message": "must not be 'bad'"},
        ),
        ("missing", 404, {"error": "NotFoundError", "message": "no such thing"}),
        ("down", 503, {"error": "UnavailableError", "message": "database is down"}),
        ("ok", 200, {"name": "ok"}),
    ],
)
async def test_errors_map_to_status_codes(name: str, status: int, body: dict[str, str]) -> None:
    async with await _client(_app(Readiness("testsvc"))) as client:
        response = await client.get(f"/v1/things/{name}")
    assert response.status_code == status
    assert response.json() == body


async def test_http_server_serves_on_a_real_port_and_stops() -> None:
    server = HttpServer(_app(Readiness("testsvc")), host="127.0.0.1", port=0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/healthz")).status_code == 200
    await server.stop()
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/healthz")


def test_json_log_lines_keep_extra_fields() -> None:
    record = logging.LogRecord(
        "hindsight.x", logging.WARNING, __file__, 1, "hello %s", ("w",), None
    )
    record.subject = "png.created"
    line = json.loads(JsonFormatter("testsvc").format(record))
    assert line["msg"] == "hello w"
    assert line["level"] == "warning"
    assert line["service"] == "testsvc"
    assert line["subject"] == "png.created"
    assert line["ts"].endswith("Z")


async def test_bearer_auth_guards_writes() -> None:
    from fastapi import Depends
    from pydantic import SecretStr

    from hindsight.common.http import bearer_auth

    app = create_http_app(service="testsvc")

    @app.post("/v1/write", dependencies=[Depends(bearer_auth(SecretStr("s3cret")))])
    async def write() -> dict[str, bool]:
        return {"ok": True}

    closed = create_http_app(service="closed")

    @closed.post("/v1/write", dependencies=[Depends(bearer_auth(None))])
    async def never() -> dict[str, bool]:
        return {"ok": True}

    async with await _client(app) as client:
        assert (await client.post("/v1/write")).status_code == 401
        wrong = await client.post("/v1/write", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.post("/v1/write", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and right.json() == {"ok": True}
    async with await _client(closed) as client:
        refused = await client.post("/v1/write", headers={"Authorization": "Bearer s3cret"})
        assert refused.status_code == 401
        assert "HINDSIGHT_ADMIN_TOKEN" in refused.json()["message"]
