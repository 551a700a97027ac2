"""Packed ScoreBatch through the gateway (real ports, a fake scorer we control)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from gateway_testkit import Fake, GatewayFactory

from hindsight.gateway.domain.routing import Deployed
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.unit

NAMES = ["f02", "f00", "f01"]


def packed(n: int = 4, *, prefix: str = "p") -> scoring_pb2.ScoreBatchRequest:
    return scoring_pb2.ScoreBatchRequest(
        feature_names=NAMES,
        requests=[
            scoring_pb2.ScoreRequest(
                signal_id=f"{prefix}{i}",
                side="sell",
                feature_values=[0.5 * i, math.nan, -1.0 - i],
            )
            for i in range(n)
        ],
    )


def _same(a: Any, b: Any) -> bool:
    return bytes(a.SerializeToString(deterministic=True)) == bytes(
        b.SerializeToString(deterministic=True)
    )


async def test_packed_batch_passes_through_unchanged(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory([fake.target])
    batch = packed()
    answer = await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert [r.signal_id for r in answer.responses] == [f"p{i}" for i in range(4)]
    assert [r.p_success for r in answer.responses] == pytest.approx(
        [0.25 + i / 100 for i in range(4)]
    )
    [received] = fake.scorer.batches
    assert _same(received, batch)  # names and values (NaN included) as sent, one call
    assert fake.scorer.metadata[-1].get("x-hindsight-logged-by") == "gateway"
    assert [(r.signal_id, r.fallback) for r in gateway.log.records] == [
        (f"p{i}", False) for i in range(4)
    ]

    fake.scorer.behaviour.mode = "unavailable"
    answer = await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert [(r.signal_id, r.fallback_reason) for r in answer.responses] == [
        (f"p{i}", "unavailable") for i in range(4)
    ]
    assert [r.fallback for r in gateway.log.records[4:]] == [True] * 4


async def test_experiment_pins_keep_the_packed_names(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.pinned = {"v2": (0.6, 0.0)}
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(Deployed("trade_success", "v1", "production"))
    gateway.table.apply(Deployed("trade_success", "v2", "canary", "exp-1", {"v1": 0, "v2": 1}))
    batch = packed()
    answer = await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert {(r.model_version, r.arm) for r in answer.responses} == {("v2", "candidate")}
    [received] = fake.scorer.batches
    pinned = scoring_pb2.ScoreBatchRequest()
    pinned.CopyFrom(batch)
    for one in pinned.requests:
        one.model_version = "v2"
    assert _same(received, pinned)  # the pinned copy keeps the names and the values

    # The candidate is not loaded: the original packed batch is forwarded to production.
    fake.scorer.behaviour.pinned = {}
    answer = await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert {(r.model_version, r.arm, r.fallback) for r in answer.responses} == {("v1", "", False)}
    assert _same(fake.scorer.batches[-1], batch)


async def test_shadow_scores_packed_rows_as_maps(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.pinned = {"v-shadow": (0.99, 0.0)}
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(Deployed("trade_success", "v-shadow", "shadow", "sh-1"))
    batch = packed(3)
    answer = await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert {(r.model_version, r.arm) for r in answer.responses} == {("v1", "")}
    for _ in range(100):
        if len(fake.scorer.pinned_done) == 3:
            break
        await asyncio.sleep(0.05)
    shadows = sorted(
        (r for r in fake.scorer.requests if r.model_version == "v-shadow"),
        key=lambda r: r.signal_id,
    )
    assert [r.signal_id for r in shadows] == ["p0", "p1", "p2"]
    for shadow, row in zip(shadows, batch.requests, strict=True):
        assert not shadow.feature_values  # Score takes the map form only
        assert dict(shadow.features).keys() == set(NAMES)
        expected = dict(zip(NAMES, row.feature_values, strict=True))
        assert repr(sorted(shadow.features.items())) == repr(sorted(expected.items()))


def _set(index: int, field: str, value: Any) -> Callable[[Any], None]:
    def mutate(batch: Any) -> None:
        target = getattr(batch.requests[index], field)
        if isinstance(value, dict):
            target.update(value)
        else:
            target.append(value)

    return mutate


def _drop_value(batch: Any) -> None:
    del batch.requests[2].feature_values[0]


def _duplicate_name(batch: Any) -> None:
    batch.feature_names[2] = "f02"


def _no_names(batch: Any) -> None:
    del batch.feature_names[:]


def _short_row_then_no_signal_id(batch: Any) -> None:
    # The scorer checks every row's own fields before the packed shape: so must the gateway.
    del batch.requests[0].feature_values[0]
    batch.requests[1].signal_id = ""


def _duplicate_name_then_no_signal_id(batch: Any) -> None:
    batch.feature_names[2] = "f02"
    batch.requests[3].signal_id = ""


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_duplicate_name, "feature_names"),
        (_set(1, "feature_values", 1.0), "requests[1].feature_values"),
        (_drop_value, "requests[2].feature_values"),
        (_set(3, "features", {"f00": 1.0}), "requests[3].features"),
        (_no_names, "requests[0].feature_values"),
        (_short_row_then_no_signal_id, "requests[1].signal_id"),
        (_duplicate_name_then_no_signal_id, "requests[3].signal_id"),
    ],
)
async def test_gateway_rejects_malformed_packed_batches_itself(
    fake: Fake, gateway_factory: GatewayFactory, mutate: Callable[[Any], None], field: str
) -> None:
    gateway = await gateway_factory([fake.target])
    batch = packed()
    mutate(batch)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.ScoreBatch(batch, timeout=1.0)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(f"{field}:")
    assert fake.scorer.requests == [] and gateway.log.records == []


async def test_score_refuses_packed_values(fake: Fake, gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory([fake.target])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Score(packed(1).requests[0], timeout=1.0)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("feature_values:")
    assert fake.scorer.requests == []
