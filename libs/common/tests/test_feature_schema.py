"""Feature schemas: validation of a declaration, its content hash, the check of an event."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hindsight.common.errors import InvalidInputError
from hindsight.common.feature_schema import (
    FeatureSchema,
    FeatureSpec,
    Violation,
    check_features,
    require_features,
)

pytestmark = pytest.mark.unit

SCHEMA = FeatureSchema(
    version=3,
    features=[
        FeatureSpec(name="rsi", dtype="float", min=0, max=100, missing="reject"),
        FeatureSpec(name="bars_since", dtype="int", min=0),
        FeatureSpec(name="trend_up", dtype="bool", missing="fill:0"),
        FeatureSpec(name="atr"),
    ],
)

_finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@st.composite
def spec_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid FeatureSpec as a JSON object, optional keys sometimes left out."""
    body: dict[str, Any] = {"name": draw(st.text(min_size=1, max_size=12).filter(str.isprintable))}
    if draw(st.booleans()):
        body["dtype"] = "float"
    if draw(st.booleans()):
        low = draw(_finite)
        body["min"] = low
        if draw(st.booleans()):
            body["max"] = low + draw(st.floats(min_value=0, max_value=1e6))
    body["missing"] = draw(st.sampled_from(["allow", "reject"]))
    return body


unique_specs = st.lists(spec_dicts(), min_size=2, max_size=8, unique_by=lambda d: d["name"])


def _schema(features: list[dict[str, Any]], version: int = 1) -> FeatureSchema:
    return FeatureSchema.model_validate({"version": version, "features": features})


@given(unique_specs, st.randoms(use_true_random=False))
def test_key_order_and_spelled_out_defaults_do_not_change_the_hash(
    features: list[dict[str, Any]], rnd: Any
) -> None:
    shuffled = []
    for body in features:
        items = list(body.items())
        rnd.shuffle(items)
        shuffled.append(dict(items))
    spelled = [
        {"dtype": "float", "min": None, "max": None, "missing": "allow", **b} for b in features
    ]
    assert _schema(shuffled).content_hash() == _schema(features).content_hash()
    assert _schema(spelled).content_hash() == _schema(features).content_hash()


@given(unique_specs, st.randoms(use_true_random=False))
def test_order_of_the_features_changes_the_hash(features: list[dict[str, Any]], rnd: Any) -> None:
    permuted = list(features)
    rnd.shuffle(permuted)
    names = [f["name"] for f in features]
    same_order = [f["name"] for f in permuted] == names
    assert (_schema(permuted).content_hash() == _schema(features).content_hash()) == same_order


@given(unique_specs, st.integers(min_value=1, max_value=10**6))
def test_the_hash_is_of_the_features_not_the_version(
    features: list[dict[str, Any]], version: int
) -> None:
    digest = _schema(features, version).content_hash()
    assert digest == _schema(features, 1).content_hash()
    assert len(digest) == 64 and int(digest, 16) >= 0
    again = FeatureSchema.model_validate_json(_schema(features, version).model_dump_json())
    assert again.content_hash() == digest


def test_any_change_of_a_spec_changes_the_hash() -> None:
    base = SCHEMA.content_hash()
    rsi = SCHEMA.features[0]
    for changed in (
        rsi.model_copy(update={"max": 99.0}),
        rsi.model_copy(update={"missing": "allow"}),
        rsi.model_copy(update={"dtype": "int"}),
        rsi.model_copy(update={"name": "rsi14"}),
    ):
        other = FeatureSchema(version=3, features=[changed, *SCHEMA.features[1:]])
        assert other.content_hash() != base


def test_one_value_written_two_ways_hashes_alike() -> None:
    a = _schema([{"name": "x", "min": 0, "missing": "fill:0"}])
    b = _schema([{"name": "x", "min": -0.0, "missing": "fill:0.0"}])
    assert a.content_hash() == b.content_hash()
    assert a.features[0].missing == "fill:0.0"


@pytest.mark.parametrize(
    ("features", "where", "says"),
    [
        ([{"name": "a"}, {"name": "a"}], ("features",), "features[1].name: 'a' is declared twice"),
        ([{"name": "a", "dtype": "str"}], ("features", 0, "dtype"), "'float', 'int' or 'bool'"),
        ([{"name": "a", "min": 2, "max": 1}], ("features", 0), "min 2.0 is above max 1.0"),
        ([{"name": "a", "missing": "drop"}], ("features", 0, "missing"), "'allow', 'reject'"),
        ([{"name": "a", "missing": "fill:x"}], ("features", 0, "missing"), "'x' is not a number"),
        ([{"name": "a", "missing": "fill:nan"}], ("features", 0, "missing"), "not finite"),
        ([{"name": "a", "dtype": "int", "missing": "fill:0.5"}], ("features", 0), "not an integer"),
        ([{"name": "a", "max": 1, "missing": "fill:2"}], ("features", 0), "above max 1.0"),
        ([{"name": "a", "min": "NaN"}], ("features", 0, "min"), "Input should be a valid number"),
        ([{"name": ""}], ("features", 0, "name"), "at least 1 character"),
        ([{"name": "a\ud800"}], ("features", 0, "name"), "unicode string"),
        ([{"name": "a", "unit": "pips"}], ("features", 0, "unit"), "Extra inputs"),
        ([], ("features",), "at least 1 item"),
    ],
)
def test_a_bad_declaration_names_the_field(
    features: list[dict[str, Any]], where: tuple[Any, ...], says: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _schema(features)
    error = caught.value.errors()[0]
    assert error["loc"] == where
    assert says in error["msg"]


def test_a_matching_event_passes() -> None:
    assert (
        check_features(SCHEMA, {"rsi": 55.5, "bars_since": 3.0, "trend_up": 1.0, "atr": 0.2}) == []
    )
    # missing=allow / fill: absent or null is fine
    assert check_features(SCHEMA, {"rsi": 0.0, "bars_since": None}) == []


def test_every_mismatch_is_named_in_declared_order_then_unknown() -> None:
    features = {
        "extra": 1.0,
        "atr": math.inf,
        "trend_up": 0.5,
        "bars_since": 1.5,
        "rsi": None,
        "other": None,
    }
    assert check_features(SCHEMA, features) == [
        Violation(field="rsi", reason="missing (the schema rejects a missing value)"),
        Violation(field="bars_since", reason="1.5 is not an integer (dtype int)"),
        Violation(field="trend_up", reason="0.5 is not 0 or 1 (dtype bool)"),
        Violation(field="atr", reason="inf is not finite"),
        Violation(field="extra", reason="unknown feature (not in feature schema v3)"),
        Violation(field="other", reason="unknown feature (not in feature schema v3)"),
    ]


@pytest.mark.parametrize(
    ("features", "field", "reason"),
    [
        ({"rsi": 100.5}, "rsi", "100.5 is above max 100.0"),
        ({"rsi": -1.0}, "rsi", "-1.0 is below min 0.0"),
        ({"rsi": 1.0, "bars_since": -2.0}, "bars_since", "-2.0 is below min 0.0"),
        ({}, "rsi", "missing (the schema rejects a missing value)"),
        ({"rsi": math.nan}, "rsi", "nan is not finite"),
        ({"rsi": "7"}, "rsi", "str is not a number"),
    ],
)
def test_one_mismatch(features: dict[str, Any], field: str, reason: str) -> None:
    assert check_features(SCHEMA, features) == [Violation(field=field, reason=reason)]


def test_bounds_are_inclusive() -> None:
    assert check_features(SCHEMA, {"rsi": 0.0}) == []
    assert check_features(SCHEMA, {"rsi": 100.0}) == []


def test_require_features_raises_bad_input_naming_the_first_field() -> None:
    require_features(SCHEMA, {"rsi": 50.0})
    with pytest.raises(InvalidInputError) as caught:
        require_features(SCHEMA, {"rsi": 150.0, "zz": 1.0})
    assert caught.value.field == "features.rsi"
    assert caught.value.reason == (
        "150.0 is above max 100.0; features.zz: unknown feature (not in feature schema v3)"
    )
