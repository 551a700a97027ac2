"""Family specs and rows: declared families, the label spec chosen, versions, targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from hindsight.common.family import DEFAULT_FAMILY, HEAD_TARGETS
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.domain.family_rows import (
    LabelledSignal,
    bar_length,
    horizon_end,
    training_row,
)
from hindsight.trainer.domain.family_spec import (
    FamilySpec,
    choose_label_spec,
    family_catalog,
    next_family_version,
)

pytestmark = pytest.mark.unit

SPEC_A = "0123456789abcdef"
TS = datetime(2024, 3, 1, 12, tzinfo=UTC)


def _labelled(**overrides: object) -> LabelledSignal:
    fields: dict[str, object] = {
        "signal_id": "s1",
        "seq": 7,
        "symbol": "BTCUSD",
        "timeframe": "1h",
        "side": "buy",
        "ts": TS,
        "occurred_at": TS,
        "features": {"f00": 1.0, "f01": None},
        "feature_schema_version": 1,
        "entry_price": 100.0,
        "label_spec": SPEC_A,
        "revision": 0,
        "horizon_bars": 24,
        "y_entry": 1,
        "realised_r": 1.5,
        "runup_r": 2.25,
        "dd_katr": 0.8,
        "best_offset_katr": -0.25,
        "liquidity_cluster": "H",
    }
    fields.update(overrides)
    return LabelledSignal(**fields)  # type: ignore[arg-type]


def test_the_default_family_is_playbook_on_the_trainers_schema_unless_declared() -> None:
    settings = TrainerSettings(database_url="", feature_schema_version=3)
    assert settings.family_specs() == {
        DEFAULT_FAMILY: FamilySpec(family=DEFAULT_FAMILY, feature_schema_version=3)
    }
    declared = TrainerSettings(
        database_url="",
        families=[
            {"family": "playbook", "feature_schema_version": 2, "label_spec": SPEC_A},
            {"family": "btc", "feature_schema_version": 1, "symbols": ["BTCUSD"]},
        ],
    ).family_specs()
    assert declared["playbook"].label_spec == SPEC_A
    assert declared["playbook"].feature_schema_version == 2
    assert declared["btc"].symbols == ("BTCUSD",) and declared["btc"].label_spec is None


def test_families_come_from_json_and_a_family_declared_twice_or_named_like_a_model_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "HINDSIGHT_TRAINER_FAMILIES",
        '[{"family": "fx", "feature_schema_version": 2, "timeframes": ["1h", "15m"]}]',
    )
    specs = TrainerSettings(database_url="").family_specs()
    assert sorted(specs) == ["fx", "playbook"] and specs["fx"].timeframes == ("15m", "1h")
    twice = (
        '[{"family": "fx", "feature_schema_version": 2},'
        ' {"family": "fx", "feature_schema_version": 1}]'
    )
    monkeypatch.setenv("HINDSIGHT_TRAINER_FAMILIES", twice)
    with pytest.raises(ValidationError, match="declared twice"):
        TrainerSettings(database_url="")
    monkeypatch.setenv(
        "HINDSIGHT_TRAINER_FAMILIES", '[{"family": "trade_success", "feature_schema_version": 1}]'
    )
    with pytest.raises(ValidationError, match="trade_success is also a single model"):
        TrainerSettings(database_url="")
    with pytest.raises(ValueError, match="also a single model"):
        family_catalog([], FamilySpec(family="m", feature_schema_version=1), models=["m"])


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"family": "a b", "feature_schema_version": 1}, "family"),
        ({"family": "f", "feature_schema_version": 0}, "feature_schema_version"),
        ({"family": "f", "feature_schema_version": 1, "symbols": []}, "symbols"),
        ({"family": "f", "feature_schema_version": 1, "timeframes": [""]}, "timeframes"),
        (
            {"family": "f", "feature_schema_version": 1, "label_spec": "ABCDEF0123456789"},
            "label_spec",
        ),
        ({"family": "f", "feature_schema_version": 1, "label_spec": "0123"}, "label_spec"),
        ({"family": "f", "feature_schema_version": 1, "model_name": "m"}, "model_name"),
    ],
)
def test_a_bad_family_spec_names_its_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        FamilySpec.model_validate(fields)
    assert field in str(info.value)


def test_the_configured_label_spec_wins_else_the_newest_seen() -> None:
    free = FamilySpec(family="f", feature_schema_version=1)
    pinned = free.model_copy(update={"label_spec": SPEC_A})
    assert choose_label_spec(free, "fedcba9876543210") == "fedcba9876543210"
    assert choose_label_spec(free, None) is None
    assert choose_label_spec(pinned, "fedcba9876543210") == SPEC_A


def test_versions_count_minor_per_retrain_and_major_per_feature_schema_change() -> None:
    assert next_family_version([], 1) == "v1_0_0"
    assert next_family_version([("v1_0_0", 1)], 1) == "v1_1_0"
    # Semver order, not text order: v1_10_0 is newer than v1_9_0.
    assert next_family_version([("v1_9_0", 1), ("v1_10_0", 1)], 1) == "v1_11_0"
    assert next_family_version([("v1_2_0", 1)], 2) == "v2_0_0"
    # Back to schema 1 after a schema-2 release: a new major, never below an existing one.
    assert next_family_version([("v1_2_0", 1), ("v2_0_0", 2)], 1) == "v3_0_0"
    # An unreadable newest release is taken as another schema: never reused.
    assert next_family_version([("v1_0_0", 1), ("v1_1_0", None)], 1) == "v2_0_0"


def test_a_horizon_ends_after_its_bars_months_counted_long() -> None:
    assert bar_length("15m") == timedelta(minutes=15)
    assert bar_length("4h") == timedelta(hours=4)
    assert bar_length("1w") == timedelta(weeks=1)
    assert bar_length("1mo") == timedelta(days=31)
    assert horizon_end(TS, "1h", 24) == TS + timedelta(days=1)
    for bad in ("", "1", "0h", "1y", "h1"):
        with pytest.raises(ValueError, match="timeframe"):
            bar_length(bad)


def test_each_head_learns_its_label_field_and_the_gate_sees_y_entry_as_the_result() -> None:
    row = _labelled()
    assert row.targets() == {
        HEAD_TARGETS["entry"]: 1.0,
        HEAD_TARGETS["risk"]: 0.8,
        HEAD_TARGETS["rr"]: 2.25,
        HEAD_TARGETS["offset"]: -0.25,
    }
    assert _labelled(dd_katr=None, best_offset_katr=None).targets()["sl_katr"] is None
    converted = training_row(row)
    assert converted.result == "win" and training_row(_labelled(y_entry=0)).result == "loss"
    assert converted.closed_at == TS + timedelta(hours=24)
    assert converted.realised_r == 1.5 and converted.seq == 7
    assert converted.extra["liquidity_cluster"] == "H"
    assert converted.extra["offset_katr"] == -0.25
