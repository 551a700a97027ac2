"""The scorer's request limits, and no unbounded caller string in a status (issue 12)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from scorer_testkit import NAMES, make_model, start_servicer, stub

from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.unit

LONG = "y" * 20_000
VALID = dict.fromkeys(NAMES, 0.1)


@pytest_asyncio.fixture
async def client() -> AsyncIterator[scoring_pb2_grpc.ScoringStub]:
    server = await start_servicer(make_model("v1"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield stub(channel)
    await server.stop(0)


def one(**fields: Any) -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(
        **{"signal_id": "s", "side": "buy", "features": VALID, **fields}
    )


async def _refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code(), caught.value.details() or ""


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (one(features={**VALID, LONG: 1.0}), "features.yyyy"),
        (one(model_name=LONG), "model_name"),
        (one(model_version=LONG), "model_version"),
        (one(signal_id=LONG), "signal_id"),
    ],
)
async def test_score_refuses_over_long_strings_with_a_short_message(
    client: scoring_pb2_grpc.ScoringStub, request_: Any, field: str
) -> None:
    code, details = await _refusal(client.Score(request_, timeout=2.0))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(field) and "(20000 chars)" in details, details
    assert len(details) < 200


async def test_an_unknown_feature_in_a_batch_is_named_truncated(
    client: scoring_pb2_grpc.ScoringStub,
) -> None:
    batch = scoring_pb2.ScoreBatchRequest(requests=[one(), one(features={**VALID, LONG: 1.0})])
    code, details = await _refusal(client.ScoreBatch(batch, timeout=2.0))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("requests[1].features.yyyy") and "(20000 chars)" in details
    packed = scoring_pb2.ScoreBatchRequest(
        feature_names=[*NAMES[:2], "z" * 200],
        requests=[scoring_pb2.ScoreRequest(signal_id="s", side="buy", feature_values=[1, 2, 3])],
    )
    code, details = await _refusal(client.ScoreBatch(packed, timeout=2.0))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "…(200 chars)" in details and len(details) < 200, details
