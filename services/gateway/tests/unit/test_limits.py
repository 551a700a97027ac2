"""Request limits and the breaker: one bad caller never opens it for everyone (issue 12).

The gateway calls a real scorer servicer (the scorer's ``ScoringServicer`` and model
store, with the scorer's test model) on a real port, with the servers' real limits.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from gateway_testkit import Fake, GatewayFactory, request

from hindsight.common.limits import MAX_BATCH_REQUESTS, MAX_REQUEST_BYTES
from hindsight.gateway.domain.breaker import BreakerConfig, BreakerState
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

sys.path.insert(0, str(Path(__file__).parents[3] / "scorer" / "tests"))
from scorer_testkit import NAMES, make_model, start_servicer  # noqa: E402

pytestmark = pytest.mark.unit

LONG = "x" * 16_384
VALID = dict.fromkeys(NAMES, 0.1)


@pytest_asyncio.fixture
async def scorer() -> AsyncIterator[str]:
    """The real scorer servicer serving model ``m`` (features a, b, c) on a real port."""
    server = await start_servicer(make_model("v1"))
    yield f"127.0.0.1:{server.port}"
    await server.stop(0)


def valid(signal_id: str = "ok-1") -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(signal_id=signal_id, side="buy", features=VALID)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def test_a_16kb_feature_name_is_invalid_argument_naming_the_field(
    scorer: str, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory([scorer])
    bad = scoring_pb2.ScoreRequest(signal_id="bad", side="buy", features={**VALID, LONG: 1.0})
    code, details = await _code(gateway.stub.Score(bad, timeout=2.0))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("features.xxxx") and "…(16384 chars)" in details, details
    assert len(details) < 200
    # The scorer, called directly, says the same (and never echoes the name whole).
    async with grpc.aio.insecure_channel(scorer) as channel:
        direct = scoring_pb2_grpc.ScoringStub(channel)
        assert await _code(direct.Score(bad, timeout=2.0)) == (code, details)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"signal_id": LONG}, "signal_id"),
        ({"symbol": LONG}, "symbol"),
        ({"timeframe": LONG}, "timeframe"),
        ({"model_name": LONG}, "model_name"),
        ({"model_version": LONG}, "model_version"),
        ({"features": {f"f{i}": 0.0 for i in range(1025)}}, "features"),
    ],
)
async def test_over_long_fields_are_refused_before_the_scorer_is_called(
    fake: Fake, gateway_factory: GatewayFactory, fields: dict[str, Any], field: str
) -> None:
    gateway = await gateway_factory([fake.target])
    one = scoring_pb2.ScoreRequest(**{"signal_id": "s", "side": "buy", "features": VALID, **fields})
    code, details = await _code(gateway.stub.Score(one, timeout=2.0))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(f"{field}: "), details
    assert len(details) < 200
    assert fake.scorer.requests == [], "no upstream call"


async def test_batch_limits_name_the_field(fake: Fake, gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory([fake.target])
    too_many = scoring_pb2.ScoreBatchRequest(requests=[request()] * (MAX_BATCH_REQUESTS + 1))
    code, details = await _code(gateway.stub.ScoreBatch(too_many, timeout=5.0))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "requests")
    long_id = scoring_pb2.ScoreBatchRequest(requests=[request(), request(signal_id=LONG)])
    code, details = await _code(gateway.stub.ScoreBatch(long_id, timeout=5.0))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("requests[1].signal_id: "), details
    long_name = scoring_pb2.ScoreBatchRequest(
        feature_names=["f00", LONG],
        requests=[scoring_pb2.ScoreRequest(signal_id="s", side="buy", feature_values=[1.0, 2.0])],
    )
    code, details = await _code(gateway.stub.ScoreBatch(long_name, timeout=5.0))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("feature_names[1]: "), details
    assert fake.scorer.requests == [], "no upstream call"


async def test_a_message_over_the_size_limit_is_refused_by_grpc(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory([fake.target])
    # The factory's server has no explicit limit; the gateway app's has MAX_REQUEST_BYTES,
    # which is gRPC's default: the same refusal either way.
    huge = scoring_pb2.ScoreBatchRequest(
        requests=[request(symbol="s" * 200) for _ in range(MAX_REQUEST_BYTES // 200)]
    )
    code, _ = await _code(gateway.stub.ScoreBatch(huge, timeout=5.0))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fake.scorer.requests == []


async def test_a_thousand_bad_callers_leave_the_breaker_closed_for_the_good_ones(
    scorer: str, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory([scorer], breaker=BreakerConfig(window_size=20, min_calls=10))
    stub = gateway.stub
    bad_single = scoring_pb2.ScoreRequest(signal_id="bad", side="buy", features={LONG: 1.0})
    # Past the gateway's batch checks (feature keys are the scorer's to judge there): the
    # scorer's answer must still be a short INVALID_ARGUMENT, relayed, never a failure.
    bad_batch = scoring_pb2.ScoreBatchRequest(
        requests=[
            valid("b-0"),
            scoring_pb2.ScoreRequest(signal_id="b-1", side="buy", features={**VALID, LONG: 1.0}),
        ]
    )
    codes: list[grpc.StatusCode] = []
    answers: list[Any] = []
    for round_ in range(20):
        calls = [_code(stub.Score(bad_single, timeout=2.0)) for _ in range(45)]
        calls += [_code(stub.ScoreBatch(bad_batch, timeout=2.0)) for _ in range(5)]
        results = await asyncio.gather(*calls)
        codes += [code for code, _ in results]
        answers.append(await stub.Score(valid(f"ok-{round_}"), timeout=2.0))
    assert len(codes) == 1000
    assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}
    [endpoint] = gateway.pool.endpoints
    assert endpoint.breaker.state is BreakerState.CLOSED
    assert [a.fallback_reason for a in answers if a.fallback] == []
    assert all(a.model_version == "v1" and 0 < a.p_success < 1 for a in answers)


async def test_a_callers_short_deadline_does_not_count_against_the_scorer(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.mode, fake.scorer.behaviour.sleep_s = "sleep", 0.2
    gateway = await gateway_factory(
        [fake.target], breaker=BreakerConfig(window_size=10, min_calls=5, slow_call_s=0.05)
    )
    # 30 ms deadlines: the scorer gets ~25 ms, less than a slow call's 50 ms, so a miss is
    # the caller's doing. The caller gets a deadline fallback (or, on a busy machine, its
    # own DEADLINE_EXCEEDED); either way nothing counts against the scorer.
    outcomes = set()
    for _ in range(20):
        try:
            answer = await gateway.stub.Score(request(), timeout=0.030)
        except grpc.aio.AioRpcError as exc:
            outcomes.add(exc.code().name)
        else:
            outcomes.add(answer.fallback_reason)
    assert outcomes <= {"deadline", "DEADLINE_EXCEEDED"}
    assert fake.scorer.requests, "the scorer was called"
    [endpoint] = gateway.pool.endpoints
    assert endpoint.breaker.state is BreakerState.CLOSED
    assert endpoint.breaker.snapshot().failures == 0
    # The same scorer given the whole default budget (no caller deadline) does count.
    for _ in range(5):
        assert (await gateway.stub.Score(request())).fallback_reason in {"deadline", "breaker_open"}
    assert endpoint.breaker.state is BreakerState.OPEN
