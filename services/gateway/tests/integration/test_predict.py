"""Predict through the whole gateway (``build_app``: real gRPC and HTTP servers, real NATS
JetStream for ``prediction.logged``) in front of a fake scorer that implements ``Predict``
on a real port, called with the generated stubs: a normal answer passes through exactly, a
slow scorer gives every head its default with the reason, a scorer that is down gives
defaults and opens its breaker, a scorer's INVALID_ARGUMENT is relayed and never counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from gateway_testkit import Fake, predict_request
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import create_broker, ensure_streams
from hindsight.common.events import PREDICTION_LOGGED
from hindsight.common.family import HEADS
from hindsight.common.settings import BaseServiceSettings
from hindsight.gateway.app import GatewayApp, build_app, build_settings
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.integration

# Per-head defaults as configured (rr set away from its 2.0 default to show it is read).
DEFAULTS = {"entry": 0.5, "risk": 1.5, "rr": 2.5, "offset": 0.0}
TOP = {"entry": "conf_pat", "risk": "sl_katr", "rr": "rr_target", "offset": "offset_katr"}


@pytest_asyncio.fixture
async def gateway(
    nats_url: str, jetstream_reset: None, fake: Fake
) -> AsyncIterator[tuple[GatewayApp, scoring_pb2_grpc.ScoringStub]]:
    settings = BaseServiceSettings(nats_url=nats_url)
    broker = create_broker(settings, client_name="gateway-predict-test")
    await broker.connect()
    try:
        await ensure_streams(broker, settings)
    finally:
        await broker.stop()
    app = build_app(
        build_settings(
            grpc_port=0,
            http_port=0,
            nats_url=nats_url,
            scorers=[fake.target],
            breaker_window=4,
            breaker_min_calls=4,
            breaker_open_s=60,
            fallback_rr=DEFAULTS["rr"],
            log_linger_ms=0,
        )
    )
    await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc.port}")
    try:
        yield app, scoring_pb2_grpc.ScoringStub(channel)
    finally:
        await channel.close()
        await app.stop()


async def _logged(nats_client: NatsClient, n: int) -> list[dict[str, Any]]:
    """The ``prediction.logged`` events once ``n`` have come, and any that come soon after."""
    js = nats_client.jetstream()
    sub = await js.pull_subscribe(PREDICTION_LOGGED, stream="HINDSIGHT")
    events: list[dict[str, Any]] = []
    for _ in range(20):
        try:
            msgs = await sub.fetch(n - len(events), timeout=1.0)
        except TimeoutError:
            continue
        events.extend(json.loads(m.data) for m in msgs)
        if len(events) >= n:
            break
    try:
        events.extend(json.loads(m.data) for m in await sub.fetch(1, timeout=0.3))
    except TimeoutError:
        pass
    return events


def _assert_defaults(answer: Any, reason: str) -> None:
    assert answer.fallback and answer.family == "playbook" and answer.family_version == ""
    assert sorted(answer.heads) == sorted(HEADS)
    for head in HEADS:
        one = answer.heads[head]
        assert (one.value, one.fallback, one.fallback_reason) == (DEFAULTS[head], True, reason)
        assert getattr(answer, TOP[head]) == DEFAULTS[head]
    assert answer.entry_style == "STOP"


async def _metric(app: GatewayApp, name: str, labels: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
        text = (await http.get("/metrics")).text
    prefix = f"{name}{{{labels}}} "
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line[len(prefix) :])


async def test_a_normal_answer_passes_through_exactly_and_is_logged_once(
    gateway: tuple[GatewayApp, scoring_pb2_grpc.ScoringStub],
    fake: Fake,
    nats_client: NatsClient,
) -> None:
    app, stub = gateway
    request = predict_request("p-1", side="sell", liquidity_cluster="H")
    answer = await stub.Predict(request, timeout=1.0)
    async with grpc.aio.insecure_channel(fake.target) as direct_channel:
        direct = await scoring_pb2_grpc.ScoringStub(direct_channel).Predict(request, timeout=1.0)
    assert answer.prediction_time_ms > 0
    answer.prediction_time_ms = direct.prediction_time_ms  # the gateway's own time
    assert answer == direct  # every head, value, member, version, quantile: as answered
    assert (answer.conf_pat, answer.offset_katr, answer.entry_style) == (0.25, -0.25, "LIMIT")
    assert answer.heads["entry"].member == "entry_H" and not answer.fallback
    assert fake.scorer.metadata[0].get("x-hindsight-logged-by") == "gateway"

    batch = scoring_pb2.PredictBatchRequest(requests=[predict_request(f"p-b{i}") for i in (0, 1)])
    answers = await stub.PredictBatch(batch, timeout=1.0)
    assert [a.signal_id for a in answers.responses] == ["p-b0", "p-b1"]
    assert [a.conf_pat for a in answers.responses] == pytest.approx([0.25, 0.26])

    events = await _logged(nats_client, 3)  # the direct call to the fake logs nothing
    assert sorted(e["signal_id"] for e in events) == ["p-1", "p-b0", "p-b1"]
    by_id = {e["signal_id"]: e for e in events}
    one = by_id["p-1"]
    assert (one["model_name"], one["model_version"], one["p_success"], one["fallback"]) == (
        "playbook",
        "v1_0_0",
        0.25,
        False,
    )
    assert (
        await _metric(
            app, "hindsight_gateway_answers_total", 'kind="model",method="Predict",reason=""'
        )
        >= 1
    )


async def test_a_slow_scorer_gives_every_head_its_default_within_the_deadline(
    gateway: tuple[GatewayApp, scoring_pb2_grpc.ScoringStub],
    fake: Fake,
    nats_client: NatsClient,
) -> None:
    _, stub = gateway
    fake.scorer.behaviour.mode, fake.scorer.behaviour.sleep_s = "sleep", 1.0
    # Answered within the caller's deadline (a late answer would be DEADLINE_EXCEEDED here).
    answer = await stub.Predict(predict_request("slow-1"), timeout=0.2)
    _assert_defaults(answer, "deadline")
    assert answer.signal_id == "slow-1" and answer.side == "buy" and answer.arm == ""
    [event] = await _logged(nats_client, 1)
    assert (event["model_version"], event["fallback"], event["fallback_reason"]) == (
        None,
        True,
        "deadline",
    )
    assert (event["model_name"], event["p_success"]) == ("playbook", DEFAULTS["entry"])


async def test_a_scorer_that_is_down_gives_defaults_and_opens_its_breaker(
    gateway: tuple[GatewayApp, scoring_pb2_grpc.ScoringStub], fake: Fake
) -> None:
    app, stub = gateway
    await fake.server.stop(0)
    answers = [await stub.Predict(predict_request(f"d-{i}"), timeout=0.5) for i in range(6)]
    for answer in answers[:4]:
        _assert_defaults(answer, "unavailable")
    for answer in answers[4:]:  # 4 failures in a window of 4: open
        _assert_defaults(answer, "breaker_open")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
        [breaker] = (await http.get("/v1/breakers")).json()
    assert breaker["state"] == "open"
    batch = scoring_pb2.PredictBatchRequest(requests=[predict_request("d-b")])
    [batch_answer] = (await stub.PredictBatch(batch, timeout=0.5)).responses
    _assert_defaults(batch_answer, "breaker_open")
    labels = 'head="rr",method="Predict",reason="breaker_open"'
    assert await _metric(app, "hindsight_gateway_head_fallbacks_total", labels) >= 2


async def test_invalid_argument_from_the_scorer_is_relayed_and_never_counted(
    gateway: tuple[GatewayApp, scoring_pb2_grpc.ScoringStub], fake: Fake
) -> None:
    app, stub = gateway
    fake.scorer.behaviour.mode = "invalid"
    for i in range(8):  # twice the breaker's window
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Predict(predict_request(f"i-{i}"), timeout=1.0)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "features.f00: missing"
    [breaker] = app.pool.endpoints
    snapshot = breaker.breaker.snapshot()
    assert (snapshot.state, snapshot.calls, snapshot.failures) == ("closed", 0, 0)
    fake.scorer.behaviour.mode = "ok"
    answer = await stub.Predict(predict_request("i-ok"), timeout=1.0)
    assert not answer.fallback and answer.family_version == "v1_0_0"
