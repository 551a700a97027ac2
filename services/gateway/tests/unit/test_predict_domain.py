"""Predict on the gateway without I/O: per-head defaults, answer assembly, checks, pinning."""

from __future__ import annotations

from typing import Any

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.common.family import FALLBACK_HEADS, HEADS
from hindsight.common.limits import MAX_BATCH_REQUESTS, MAX_FEATURES
from hindsight.gateway.app import build_settings
from hindsight.gateway.domain.fallback import FallbackReason
from hindsight.gateway.domain.heads import HeadDefaults, missing_heads
from hindsight.gateway.predict import (
    check_predict_batch,
    check_predict_request,
    complete,
    fill_fallback,
    forwarded,
    logged_as,
)
from hindsight.scoring.v1.scoring_pb2 import (
    PredictBatchRequest,
    PredictRequest,
    PredictResponse,
)

pytestmark = pytest.mark.unit

TOP = {"entry": "conf_pat", "risk": "sl_katr", "rr": "rr_target", "offset": "offset_katr"}


def predict(signal_id: str = "s-1", **fields: Any) -> PredictRequest:
    fields.setdefault("side", "buy")
    fields.setdefault("features", {"f00": 1.0})
    return PredictRequest(signal_id=signal_id, **fields)


def answered(*, missing: tuple[str, ...] = (), scorer_fallback: tuple[str, ...] = ()) -> Any:
    """A scorer's answer with every head but ``missing``."""
    values = {"entry": 0.61, "risk": 1.2, "rr": 2.4, "offset": 0.3}
    response = PredictResponse(
        signal_id="s-1", side="sell", family="playbook", family_version="v1_2_0"
    )
    for head, value in values.items():
        if head in missing:
            continue
        one = response.heads[head]
        one.value, one.member, one.model_version = value, head, "v1_2_0"
        setattr(response, TOP[head], value)
        if head in scorer_fallback:
            one.fallback, one.fallback_reason = True, "member_not_loaded"
            response.fallback = True
    response.entry_style = "STOP"
    return response


def test_head_defaults_are_the_contracts_and_refuse_nonsense() -> None:
    defaults = HeadDefaults()
    assert {head: defaults.value(head) for head in HEADS} == FALLBACK_HEADS
    assert defaults.entry_style == "STOP"
    assert HeadDefaults(offset=-0.2).entry_style == "LIMIT"
    for bad in (
        {"entry": 1.0},
        {"entry": 0.0},
        {"risk": 0.0},
        {"rr": -1.0},
        {"rr": float("inf")},
        {"offset": float("nan")},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            HeadDefaults(**bad)
    assert missing_heads(["entry", "rr"]) == ["risk", "offset"]


def test_settings_set_each_head_default_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HINDSIGHT_GATEWAY_FALLBACK_RR", "3")
    monkeypatch.setenv("HINDSIGHT_GATEWAY_FALLBACK_OFFSET", "-0.1")
    defaults = build_settings().head_defaults()
    assert (defaults.entry, defaults.risk, defaults.rr, defaults.offset) == (0.5, 1.5, 3.0, -0.1)
    monkeypatch.setenv("HINDSIGHT_GATEWAY_FALLBACK_ENTRY", "1.0")
    with pytest.raises(ValueError, match="fallback_entry"):
        build_settings()


def test_fallback_answers_every_head_with_its_default_and_the_reason() -> None:
    request = predict(side="sell", liquidity_cluster="H")
    response = fill_fallback(
        PredictResponse(),
        request,
        family="playbook",
        reason=FallbackReason.DEADLINE,
        defaults=HeadDefaults(rr=3.0),
        elapsed_ms=4.5,
    )
    assert (response.signal_id, response.side, response.family) == ("s-1", "sell", "playbook")
    assert response.family_version == "" and response.arm == ""
    assert response.fallback and response.prediction_time_ms == 4.5
    assert (response.conf_pat, response.sl_katr, response.rr_target, response.offset_katr) == (
        0.5,
        1.5,
        3.0,
        0.0,
    )
    assert response.entry_style == "STOP"
    assert sorted(response.heads) == sorted(HEADS)
    for head, one in response.heads.items():
        assert one.fallback and one.fallback_reason == "deadline"
        assert one.value == getattr(response, TOP[head])
        assert (one.member, one.model_version, list(one.quantiles)) == ("", "", [])


def test_a_complete_answer_passes_through_byte_for_byte() -> None:
    response = answered(scorer_fallback=("risk",))
    before = response.SerializeToString(deterministic=True)
    assert complete(response, HeadDefaults()) == []
    assert response.SerializeToString(deterministic=True) == before
    assert response.heads["risk"].fallback_reason == "member_not_loaded"


def test_a_head_the_scorer_left_out_gets_its_default_alone() -> None:
    response = answered(missing=("rr", "offset"))
    assert not response.fallback
    assert complete(response, HeadDefaults(offset=-0.5)) == ["rr", "offset"]
    assert response.fallback
    assert (response.rr_target, response.offset_katr, response.entry_style) == (2.0, -0.5, "LIMIT")
    for head in ("rr", "offset"):
        assert response.heads[head].fallback
        assert response.heads[head].fallback_reason == "no_model"
    assert (response.conf_pat, response.heads["entry"].fallback) == (0.61, False)
    assert response.heads["risk"].model_version == "v1_2_0"


def test_the_entry_head_decides_how_an_answer_is_logged() -> None:
    real = logged_as(answered(scorer_fallback=("risk",)))
    assert (real.fallback, real.fallback_reason, real.model_version) == (False, None, "v1_2_0")
    entry_down = logged_as(answered(scorer_fallback=("entry",)))
    assert (entry_down.fallback, entry_down.fallback_reason, entry_down.model_version) == (
        True,
        "member_not_loaded",
        None,
    )
    gateway = fill_fallback(
        PredictResponse(),
        predict(),
        family="playbook",
        reason=FallbackReason.BREAKER_OPEN,
        defaults=HeadDefaults(),
        elapsed_ms=0.0,
    )
    assert logged_as(gateway) == type(real)(True, "breaker_open", None)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"signal_id": ""}, "signal_id"),
        ({"side": "hold"}, "side"),
        ({"side": "BUY"}, "side"),
        ({"family": "no/such"}, "family"),
        ({"family": "x" * 300}, "family"),
        ({"family_version": "1.2.0"}, "family_version"),
        ({"family_version": "v1_2"}, "family_version"),
        ({"liquidity_cluster": "X"}, "liquidity_cluster"),
        ({"liquidity_cluster": "h"}, "liquidity_cluster"),
        ({"symbol": "s" * 257}, "symbol"),
        ({"timeframe": "t" * 257}, "timeframe"),
        ({"features": {f"f{i}": 0.0 for i in range(MAX_FEATURES + 1)}}, "features"),
        ({"features": {"n" * 300: 0.0}}, "features.nnnn"),
    ],
)
def test_bad_input_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_predict_request(predict(**fields))
    assert str(info.value).startswith(field), str(info.value)
    assert len(str(info.value)) < 200  # a caller's long value is never quoted whole


def test_valid_requests_pass_with_or_without_the_optional_fields() -> None:
    check_predict_request(predict())
    check_predict_request(
        predict(side="sell", family="playbook", family_version="v2_0_1", liquidity_cluster="L")
    )
    check_predict_request(predict(family="", family_version="", liquidity_cluster=""))


def test_a_batch_names_the_first_bad_request_by_index() -> None:
    rows = [predict(f"s-{i}", liquidity_cluster="M") for i in range(5)]
    check_predict_batch(PredictBatchRequest(requests=rows))
    rows[3].family_version = "latest"
    rows[4].side = "hold"
    with pytest.raises(InvalidInputError, match=r"^requests\[3\]\.family_version"):
        check_predict_batch(PredictBatchRequest(requests=rows))
    rows[3].family_version = ""
    with pytest.raises(InvalidInputError, match=r"^requests\[4\]\.side"):
        check_predict_batch(PredictBatchRequest(requests=rows))
    too_many = PredictBatchRequest(requests=[predict()] * (MAX_BATCH_REQUESTS + 1))
    with pytest.raises(InvalidInputError, match=r"^requests: has 10001"):
        check_predict_batch(too_many)


def test_forwarded_pins_a_copy_only_when_needed() -> None:
    request = predict()
    assert forwarded(request, family="playbook", version=None) is request
    pinned = forwarded(request, family="playbook", version="v1_3_0")
    assert (pinned.family_version, request.HasField("family_version")) == ("v1_3_0", False)
    assert pinned.features == request.features and not pinned.family
    named = forwarded(request, family="other", version=None)
    assert (named.family, named.HasField("family_version")) == ("other", False)
    caller_named = predict(family="other")
    assert forwarded(caller_named, family="other", version=None) is caller_named
