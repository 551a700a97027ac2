"""The gateway as a whole (``build_app``) against a real NATS JetStream and a fake scorer:
routing replay at start, live events, ``prediction.logged``; and start-up without NATS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from gateway_testkit import Fake, request
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import create_broker, ensure_streams, publish_event
from hindsight.common.events import (
    PREDICTION_LOGGED,
    AbCompleted,
    Event,
    ModelDeployed,
)
from hindsight.common.settings import BaseServiceSettings
from hindsight.devstack.ports import free_port
from hindsight.gateway.app import GatewayApp, build_app, build_settings
from hindsight.scoring.v1 import scoring_pb2_grpc

pytestmark = pytest.mark.integration

MODEL = "trade_success"


def deployed(version: str, stage: str, **fields: Any) -> ModelDeployed:
    return ModelDeployed.create(
        source="test",
        model_name=MODEL,
        version=version,
        stage=stage,
        artifact_uri=f"models/{MODEL}/{version}",
        sha256="0" * 64,
        **fields,
    )


async def publish(nats_url: str, *events: Event) -> None:
    settings = BaseServiceSettings(nats_url=nats_url)
    broker = create_broker(settings, client_name="gateway-test")
    await broker.connect()
    try:
        await ensure_streams(broker, settings)
        for event in events:
            await publish_event(broker, event)
    finally:
        await broker.stop()


@pytest_asyncio.fixture
async def app_factory() -> AsyncIterator[Callable[..., Any]]:
    started: list[GatewayApp] = []

    async def make(**overrides: Any) -> GatewayApp:
        app = build_app(build_settings(grpc_port=0, http_port=0, **overrides))
        await app.start()
        started.append(app)
        return app

    yield make
    for app in reversed(started):
        await app.stop()


async def _until(probe: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_routing_replay_live_events_and_prediction_log(
    nats_url: str,
    jetstream_reset: None,
    nats_client: NatsClient,
    fake: Fake,
    app_factory: Callable[..., Any],
) -> None:
    await publish(
        nats_url,
        deployed("v1", "production"),
        deployed("v0", "canary", experiment_id="exp-0", traffic={"v1": 0.5, "v0": 0.5}),
        AbCompleted.create(source="test", experiment_id="exp-0", model_name=MODEL, decision="keep"),
        deployed("v2", "canary", experiment_id="exp-1", traffic={"v1": 0.0, "v2": 1.0}),
        deployed("v3", "shadow", experiment_id="sh-1"),
    )
    fake.scorer.behaviour.pinned = {"v2": (0.6, 0.0), "v3": (0.9, 0.0)}
    app = await app_factory(nats_url=nats_url, scorers=[fake.target])
    assert app.feed is not None
    await asyncio.wait_for(app.feed.replayed.wait(), 10)

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
        routes = (await http.get("/v1/routes")).json()
        [model] = routes["models"]
        assert model["production_version"] == "v1"
        assert [(e["experiment_id"], e["kind"]) for e in model["experiments"]] == [
            ("exp-1", "split"),
            ("sh-1", "shadow"),
        ]
        assert routes["replayed"] is True

        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc.port}") as channel:
            stub = scoring_pb2_grpc.ScoringStub(channel)
            answer = await stub.Score(request("live-1"), timeout=1.0)
            assert (answer.arm, answer.model_version, answer.p_success) == ("candidate", "v2", 0.6)

            # Live: the experiment ends, traffic returns to production.
            await publish(
                nats_url,
                AbCompleted.create(
                    source="test", experiment_id="exp-1", model_name=MODEL, decision="keep"
                ),
            )
            await _until(lambda: app.table.route(MODEL, "x").experiment_id is None)
            answer = await stub.Score(request("live-2"), timeout=1.0)
            assert (answer.arm, answer.model_version) == ("", "v1")

        breakers = (await http.get("/v1/breakers")).json()
        assert breakers[0]["endpoint"] == fake.target and breakers[0]["state"] == "closed"

    # Both answers and both shadow scores are logged, off the request path.
    js = nats_client.jetstream()
    sub = await js.pull_subscribe(PREDICTION_LOGGED, stream="HINDSIGHT")
    events: list[dict[str, Any]] = []
    for _ in range(20):
        msgs = await sub.fetch(10, timeout=2.0)
        events.extend(json.loads(m.data) for m in msgs)
        if len(events) >= 4:
            break
    by = {(e["signal_id"], e.get("arm")): e for e in events}
    assert set(by) == {
        ("live-1", "candidate"),
        ("live-1", "shadow"),
        ("live-2", "shadow"),
        ("live-2", None),
    }
    assert by[("live-1", "candidate")]["experiment_id"] == "exp-1"
    assert by[("live-1", "shadow")]["model_version"] == "v3"
    assert by[("live-1", "shadow")]["p_success"] == pytest.approx(0.9)


async def test_starts_and_answers_without_nats(fake: Fake, app_factory: Callable[..., Any]) -> None:
    app = await app_factory(nats_url=f"nats://127.0.0.1:{free_port()}", scorers=[fake.target])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc.port}") as channel:
        answer = await scoring_pb2_grpc.ScoringStub(channel).Score(request(), timeout=1.0)
    assert (answer.fallback, answer.model_version) == (False, "v1")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
        assert (await http.get("/readyz")).status_code == 200
        routes = (await http.get("/v1/routes")).json()
        assert routes["nats_connected"] is False and routes["models"] == []
