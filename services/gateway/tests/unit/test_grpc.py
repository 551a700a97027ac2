"""The gateway over real gRPC ports, in front of a fake scorer we control."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from gateway_testkit import Fake, GatewayFactory, SteppedClock, request, start_fake

from hindsight.gateway.dataplane import GatewayPolicy
from hindsight.gateway.domain.breaker import BreakerConfig, BreakerState
from hindsight.gateway.domain.routing import Deployed
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.unit

BREAKER = BreakerConfig()


async def test_forwards_with_the_gateway_mark(fake: Fake, gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory([fake.target])
    answer = await gateway.stub.Score(request("a-1"), timeout=1.0)
    assert (answer.signal_id, answer.p_success, answer.model_version) == ("a-1", 0.25, "v1")
    assert not answer.fallback and answer.arm == ""
    assert fake.scorer.metadata[-1].get("x-hindsight-logged-by") == "gateway"
    [record] = gateway.log.records
    assert (record.signal_id, record.model_version, record.fallback) == ("a-1", "v1", False)


async def test_slow_scorer_gives_a_deadline_fallback(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.mode, fake.scorer.behaviour.sleep_s = "sleep", 1.0
    gateway = await gateway_factory(
        [fake.target], policy=GatewayPolicy(fallback_p_success=0.1, default_deadline_s=0.05)
    )
    answer = await gateway.stub.Score(request(), timeout=0.2)  # the caller's deadline
    assert answer.fallback and answer.fallback_reason == "deadline"
    assert answer.p_success == pytest.approx(0.1) and answer.p_failure == pytest.approx(0.9)
    assert answer.model_version == ""
    no_deadline = await gateway.stub.Score(request())  # the default budget (50 ms) applies
    assert no_deadline.fallback_reason == "deadline"
    record = gateway.log.records[-1]
    assert (record.model_version, record.fallback, record.fallback_reason) == (
        None,
        True,
        "deadline",
    )


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("unavailable", "unavailable"), ("no_model", "no_model"), ("internal", "unavailable")],
)
async def test_failures_become_fallbacks(
    fake: Fake, gateway_factory: GatewayFactory, mode: str, reason: str
) -> None:
    fake.scorer.behaviour.mode = mode
    gateway = await gateway_factory([fake.target])
    answer = await gateway.stub.Score(request(), timeout=1.0)
    assert answer.fallback and answer.fallback_reason == reason


async def test_unreachable_scorer_is_a_fallback(gateway_factory: GatewayFactory) -> None:
    dead = await start_fake()
    await dead.server.stop(0)
    gateway = await gateway_factory([dead.target])
    answer = await gateway.stub.Score(request(), timeout=1.0)
    assert answer.fallback and answer.fallback_reason == "unavailable"


async def test_invalid_argument_is_relayed(fake: Fake, gateway_factory: GatewayFactory) -> None:
    fake.scorer.behaviour.mode = "invalid"
    gateway = await gateway_factory([fake.target])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Score(request(), timeout=1.0)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "features.f00: missing"
    # The client's bug does not count against the scorer.
    assert gateway.pool.endpoints[0].breaker.snapshot().calls == 0


async def test_gateway_validates_what_needs_no_model(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory([fake.target])
    for bad, field in ((request(""), "signal_id"), (request(side="long"), "side")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await gateway.stub.Score(bad, timeout=1.0)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(field)
    assert fake.scorer.requests == []


async def test_breaker_opens_then_half_opens_and_closes(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.mode = "unavailable"
    clock = SteppedClock()
    gateway = await gateway_factory([fake.target], breaker=BREAKER, clock=clock)
    breaker = gateway.pool.endpoints[0].breaker
    for _ in range(10):
        answer = await gateway.stub.Score(request(), timeout=1.0)
        assert answer.fallback_reason == "unavailable"
    assert breaker.state is BreakerState.OPEN
    seen = len(fake.scorer.requests)
    answer = await gateway.stub.Score(request(), timeout=1.0)
    assert answer.fallback and answer.fallback_reason == "breaker_open"
    assert len(fake.scorer.requests) == seen  # not even tried

    fake.scorer.behaviour.mode = "ok"
    clock.advance(BREAKER.open_s)
    assert breaker.state is BreakerState.HALF_OPEN
    answers = [await gateway.stub.Score(request(), timeout=1.0) for _ in range(3)]
    assert [a.fallback for a in answers] == [False, False, False]
    assert breaker.state is BreakerState.CLOSED


async def test_failed_probe_reopens(fake: Fake, gateway_factory: GatewayFactory) -> None:
    fake.scorer.behaviour.mode = "unavailable"
    clock = SteppedClock()
    gateway = await gateway_factory([fake.target], breaker=BREAKER, clock=clock)
    for _ in range(10):
        await gateway.stub.Score(request(), timeout=1.0)
    clock.advance(BREAKER.open_s)
    answer = await gateway.stub.Score(request(), timeout=1.0)  # the probe fails
    assert answer.fallback_reason == "unavailable"
    assert gateway.pool.endpoints[0].breaker.state is BreakerState.OPEN


async def test_second_endpoint_answers_when_the_first_fails(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    other = await start_fake()
    try:
        fake.scorer.behaviour.mode = "unavailable"
        other.scorer.behaviour.p_success = 0.75
        gateway = await gateway_factory([fake.target, other.target], breaker=BREAKER)
        answers = [await gateway.stub.Score(request(f"s{i}"), timeout=1.0) for i in range(30)]
        assert all(not a.fallback and a.p_success == 0.75 for a in answers)
        assert gateway.pool.endpoints[0].breaker.state is BreakerState.OPEN
    finally:
        await other.server.stop(0)


async def test_bulkhead_answers_overloaded(fake: Fake, gateway_factory: GatewayFactory) -> None:
    fake.scorer.behaviour.mode, fake.scorer.behaviour.sleep_s = "sleep", 0.3
    gateway = await gateway_factory([fake.target], policy=GatewayPolicy(max_in_flight=2))
    answers = await asyncio.gather(
        *(gateway.stub.Score(request(f"s{i}"), timeout=2.0) for i in range(4))
    )
    reasons = sorted(a.fallback_reason for a in answers)
    assert reasons == ["", "", "overloaded", "overloaded"]


async def test_canary_pins_the_candidate_and_falls_back_to_production(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.pinned = {"v2": (0.6, 0.0)}
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(Deployed("trade_success", "v1", "production"))
    gateway.table.apply(Deployed("trade_success", "v2", "canary", "exp-1", {"v1": 0, "v2": 1}))
    answer = await gateway.stub.Score(request("c-1"), timeout=1.0)
    assert (answer.model_version, answer.arm, answer.p_success) == ("v2", "candidate", 0.6)
    assert fake.scorer.requests[-1].model_version == "v2"
    record = gateway.log.records[-1]
    assert (record.experiment_id, record.arm) == ("exp-1", "candidate")

    # The candidate is not loaded on the scorer: production answers, no error.
    fake.scorer.behaviour.pinned = {}
    answer = await gateway.stub.Score(request("c-2"), timeout=1.0)
    assert (answer.model_version, answer.arm, answer.fallback) == ("v1", "", False)

    # A caller's own pin is never re-routed.
    fake.scorer.behaviour.pinned = {"v9": (0.9, 0.0)}
    answer = await gateway.stub.Score(request("c-3", model_version="v9"), timeout=1.0)
    assert (answer.model_version, answer.arm) == ("v9", "")


async def test_shadow_never_changes_or_delays_the_answer(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    # The shadow version answers something else, and slowly.
    fake.scorer.behaviour.pinned = {"v-shadow": (0.99, 0.8)}
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(Deployed("trade_success", "v-shadow", "shadow", "sh-1"))
    answers = [await gateway.stub.Score(request(f"s{i}"), timeout=0.1) for i in range(5)]
    assert all(
        (a.p_success, a.model_version, a.arm, a.fallback) == (0.25, "v1", "", False)
        for a in answers
    )
    assert fake.scorer.pinned_done == []  # every answer came before any shadow score ended
    for _ in range(100):
        shadows = [r for r in gateway.log.records if r.arm == "shadow"]
        if len(shadows) == 5:
            break
        await asyncio.sleep(0.05)
    assert fake.scorer.pinned_done == ["v-shadow"] * 5
    assert len(shadows) == 5
    assert {(r.model_version, r.p_success, r.experiment_id) for r in shadows} == {
        ("v-shadow", 0.99, "sh-1")
    }
    answered = [r for r in gateway.log.records if r.arm != "shadow"]
    assert [r.p_success for r in answered] == [0.25] * 5


async def test_score_batch_keeps_order_and_falls_back_per_request(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory([fake.target])
    batch = scoring_pb2.ScoreBatchRequest(requests=[request(f"b{i}") for i in range(5)])
    answer = await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert [r.signal_id for r in answer.responses] == [f"b{i}" for i in range(5)]
    assert [r.p_success for r in answer.responses] == pytest.approx(
        [0.25 + i / 100 for i in range(5)]
    )
    assert len(fake.scorer.requests) == 5 and len(fake.scorer.metadata) == 5  # one call

    fake.scorer.behaviour.mode = "unavailable"
    answer = await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert [r.signal_id for r in answer.responses] == [f"b{i}" for i in range(5)]
    assert all(r.fallback and r.fallback_reason == "unavailable" for r in answer.responses)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        bad = scoring_pb2.ScoreBatchRequest(requests=[request("ok"), request("x", side="up")])
        await gateway.stub.ScoreBatch(bad, timeout=1.0)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("requests[1].side")
