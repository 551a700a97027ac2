"""Predict / PredictBatch through the gateway over real gRPC ports, in front of a fake
scorer: family-level routing (sticky canary, pinned releases, shadows), per-head defaults,
checks before any scorer call, batches."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from gateway_testkit import Fake, GatewayFactory, predict_request, request, start_fake
from prometheus_client import REGISTRY

from hindsight.common.family import HEADS
from hindsight.gateway.dataplane import GatewayPolicy
from hindsight.gateway.domain.breaker import BreakerConfig, BreakerState
from hindsight.gateway.domain.routing import Deployed, bucket
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.unit

FAMILY = "playbook"


async def test_a_family_canary_is_sticky_by_signal_and_pins_the_release(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.pinned = {"v1_1_0": (0.7, 0.0)}
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(Deployed(FAMILY, "v1_0_0", "production"))
    traffic = {"v1_0_0": 0.5, "v1_1_0": 0.5}
    gateway.table.apply(Deployed(FAMILY, "v1_1_0", "canary", "exp-f", traffic))
    # A Score model's experiment never routes a family (and the other way round).
    gateway.table.apply(Deployed("trade_success", "v9", "canary", "exp-s", {"v9": 1.0}))
    ids = [f"f-{i}" for i in range(24)]
    for signal_id in ids + ids:  # twice: the same signal gets the same arm
        answer = await gateway.stub.Predict(predict_request(signal_id), timeout=1.0)
        forwarded = fake.scorer.requests[-1]
        if bucket("exp-f", signal_id) < 0.5:
            assert (answer.arm, answer.family_version, answer.conf_pat) == (
                "candidate",
                "v1_1_0",
                0.7,
            )
            assert forwarded.family_version == "v1_1_0"
        else:
            assert (answer.arm, answer.family_version, answer.conf_pat) == (
                "control",
                "v1_0_0",
                0.25,
            )
            assert not forwarded.HasField("family_version")
        assert not answer.fallback
    records = gateway.log.records
    assert {r.arm for r in records} == {"candidate", "control"}
    assert len(records) == 48
    for record in records:
        assert (record.model_name, record.experiment_id, record.fallback) == (
            FAMILY,
            "exp-f",
            False,
        )
        assert record.model_version == ("v1_1_0" if record.arm == "candidate" else "v1_0_0")
        assert record.p_success == (0.7 if record.arm == "candidate" else 0.25)
    assert [r.arm for r in records[:24]] == [r.arm for r in records[24:]]


async def test_an_unloaded_release_is_answered_by_production_and_a_callers_pin_stays(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(Deployed(FAMILY, "v2_0_0", "canary", "exp-2", {"v2_0_0": 1.0}))
    answer = await gateway.stub.Predict(predict_request("u-1"), timeout=1.0)
    assert (answer.family_version, answer.arm, answer.fallback) == ("v1_0_0", "", False)
    pinned, unpinned = fake.scorer.requests[-2:]
    assert (pinned.family_version, unpinned.HasField("family_version")) == ("v2_0_0", False)
    assert gateway.log.records[-1].experiment_id is None

    fake.scorer.behaviour.pinned = {"v0_9_0": (0.4, 0.0)}
    answer = await gateway.stub.Predict(
        predict_request("u-2", family_version="v0_9_0"), timeout=1.0
    )
    assert (answer.family_version, answer.arm, answer.conf_pat) == ("v0_9_0", "", 0.4)
    assert fake.scorer.requests[-1].family_version == "v0_9_0"


async def test_a_deployed_family_the_scorer_has_not_loaded_gets_defaults_not_an_error(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    """The registry deployed "swing" but the scorer has not loaded it yet (it answers
    "unknown family"): no caller's mistake, so every head's default with no_model. A
    family nobody deployed stays INVALID_ARGUMENT naming `family`."""
    gateway = await gateway_factory([fake.target])
    fake.scorer.behaviour.unknown_families = ("swing", "typo")
    gateway.table.apply(Deployed("swing", "v1_0_0", "production"))
    answer = await gateway.stub.Predict(predict_request("n-1", family="swing"), timeout=1.0)
    assert answer.fallback and answer.family == "swing"
    assert {h: (answer.heads[h].fallback, answer.heads[h].fallback_reason) for h in HEADS} == (
        dict.fromkeys(HEADS, (True, "no_model"))
    )
    batch = await gateway.stub.PredictBatch(
        scoring_pb2.PredictBatchRequest(requests=[predict_request("n-2", family="swing")]),
        timeout=1.0,
    )
    assert batch.responses[0].heads["entry"].fallback_reason == "no_model"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await gateway.stub.Predict(predict_request("n-3", family="typo"), timeout=1.0)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("family")


async def test_a_family_shadow_is_scored_with_predict_after_the_answer(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.pinned = {"v1_2_0": (0.9, 0.3)}
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(Deployed(FAMILY, "v1_2_0", "shadow", "sh-f"))
    answer = await gateway.stub.Predict(predict_request("sh-1"), timeout=0.1)
    assert (answer.family_version, answer.conf_pat, answer.arm) == ("v1_0_0", 0.25, "")
    assert fake.scorer.pinned_done == []  # answered before the shadow ended
    for _ in range(100):
        shadows = [r for r in gateway.log.records if r.arm == "shadow"]
        if shadows:
            break
        await asyncio.sleep(0.02)
    [shadow] = shadows
    assert (shadow.model_name, shadow.model_version, shadow.p_success) == (FAMILY, "v1_2_0", 0.9)
    assert shadow.experiment_id == "sh-f" and not shadow.fallback
    assert isinstance(fake.scorer.requests[-1], scoring_pb2.PredictRequest)


async def test_the_gateways_default_family_routes_and_is_named_to_the_scorer(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.pinned = {"v3_0_0": (0.8, 0.0)}
    gateway = await gateway_factory([fake.target], policy=GatewayPolicy(default_family="swing"))
    gateway.table.apply(Deployed("swing", "v3_0_0", "canary", "exp-w", {"v3_0_0": 1.0}))
    answer = await gateway.stub.Predict(predict_request("w-1"), timeout=1.0)
    assert (answer.family, answer.family_version, answer.arm) == ("swing", "v3_0_0", "candidate")
    assert fake.scorer.requests[-1].family == "swing"
    assert gateway.log.records[-1].model_name == "swing"


async def test_heads_a_scorer_left_out_get_defaults_and_its_own_fallbacks_pass_through(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.missing_heads = ("rr",)
    fake.scorer.behaviour.fallback_heads = ("risk",)
    gateway = await gateway_factory([fake.target])
    answer = await gateway.stub.Predict(predict_request("h-1"), timeout=1.0)
    assert answer.fallback and answer.family_version == "v1_0_0"
    assert (answer.rr_target, answer.heads["rr"].fallback_reason) == (2.0, "no_model")
    assert answer.heads["risk"].fallback_reason == "member_not_loaded"
    assert answer.heads["risk"].value == answer.sl_katr == 1.125
    assert list(answer.heads["risk"].quantiles) == [0.875, 1.125, 1.5]
    assert not answer.heads["entry"].fallback and answer.conf_pat == 0.25
    record = gateway.log.records[-1]  # conf_pat is a model's: the log says so
    assert (record.fallback, record.model_version, record.p_success) == (False, "v1_0_0", 0.25)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"side": "hold"}, "side"),
        ({"family": "../x"}, "family"),
        ({"family_version": "v1"}, "family_version"),
        ({"liquidity_cluster": "Q"}, "liquidity_cluster"),
        ({"signal_id": ""}, "signal_id"),
    ],
)
async def test_bad_input_is_refused_before_any_scorer_call(
    fake: Fake, gateway_factory: GatewayFactory, fields: dict[str, str], field: str
) -> None:
    gateway = await gateway_factory([fake.target])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.Predict(predict_request(**fields), timeout=1.0)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)
    assert fake.scorer.requests == [] and gateway.log.records == []


async def test_the_bulkhead_gives_overloaded_defaults(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.mode, fake.scorer.behaviour.sleep_s = "sleep", 0.3
    gateway = await gateway_factory([fake.target], policy=GatewayPolicy(max_in_flight=1))
    answers = await asyncio.gather(
        *(gateway.stub.Predict(predict_request(f"o{i}"), timeout=2.0) for i in range(2))
    )
    [overloaded] = [a for a in answers if a.fallback]
    assert {h.fallback_reason for h in overloaded.heads.values()} == {"overloaded"}


async def test_predict_batch_keeps_order_pins_per_row_and_falls_back_per_request(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    fake.scorer.behaviour.pinned = {"v1_1_0": (0.7, 0.0)}
    gateway = await gateway_factory([fake.target])
    gateway.table.apply(
        Deployed(FAMILY, "v1_1_0", "canary", "exp-b", {"v1_0_0": 0.5, "v1_1_0": 0.5})
    )
    ids = [f"b{i}" for i in range(8)]
    batch = scoring_pb2.PredictBatchRequest(requests=[predict_request(i) for i in ids])
    answer = await gateway.stub.PredictBatch(batch, timeout=1.0)
    assert [r.signal_id for r in answer.responses] == ids
    assert len(fake.scorer.batches) == 1  # one call
    for i, (signal_id, response) in enumerate(zip(ids, answer.responses, strict=True)):
        candidate = bucket("exp-b", signal_id) < 0.5
        assert response.arm == ("candidate" if candidate else "control")
        assert response.family_version == ("v1_1_0" if candidate else "v1_0_0")
        assert response.conf_pat == pytest.approx(((0.7 if candidate else 0.25) + i / 100) % 1)
    assert [r.signal_id for r in gateway.log.records] == ids

    fake.scorer.behaviour.mode = "unavailable"
    answer = await gateway.stub.PredictBatch(batch, timeout=1.0)
    assert [r.signal_id for r in answer.responses] == ids
    for response in answer.responses:
        assert response.fallback and response.arm == "" and response.family_version == ""
        assert sorted(response.heads) == sorted(HEADS)
        assert {h.fallback_reason for h in response.heads.values()} == {"unavailable"}
    assert all(r.fallback and r.arm is None for r in gateway.log.records[8:])

    calls = len(fake.scorer.batches)
    bad = scoring_pb2.PredictBatchRequest(
        requests=[predict_request("ok"), predict_request("x", liquidity_cluster="XL")]
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await gateway.stub.PredictBatch(bad, timeout=1.0)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("requests[1].liquidity_cluster")
    assert len(fake.scorer.batches) == calls


async def test_predict_shares_scores_breakers_and_tries_the_next_endpoint(
    fake: Fake, gateway_factory: GatewayFactory
) -> None:
    other = await start_fake()
    try:
        fake.scorer.behaviour.mode = "unavailable"
        other.scorer.behaviour.p_success = 0.75
        gateway = await gateway_factory(
            [fake.target, other.target], breaker=BreakerConfig(window_size=4, min_calls=4)
        )
        # Score failing on the first endpoint opens its breaker for Predict too.
        for i in range(8):
            await gateway.stub.Score(request(f"s{i}"), timeout=1.0)
        assert gateway.pool.endpoints[0].breaker.state is BreakerState.OPEN
        answers = [
            await gateway.stub.Predict(predict_request(f"p{i}"), timeout=1.0) for i in range(4)
        ]
        assert all(not a.fallback and a.conf_pat == 0.75 for a in answers)
        assert [type(r).__name__ for r in fake.scorer.requests] == ["ScoreRequest"] * 4
    finally:
        await other.server.stop(0)


def test_predict_series_exist_from_start() -> None:
    for method in ("Predict", "PredictBatch"):
        labels = {"method": method, "kind": "fallback", "reason": "deadline"}
        assert REGISTRY.get_sample_value("hindsight_gateway_answers_total", labels) is not None
        head = {"method": method, "head": "offset", "reason": "breaker_open"}
        assert REGISTRY.get_sample_value("hindsight_gateway_head_fallbacks_total", head) is not None
        assert (
            REGISTRY.get_sample_value("hindsight_gateway_score_seconds_count", {"method": method})
            is not None
        )
