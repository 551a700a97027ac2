"""Data specs: which rows a model trains on, how specs are declared, bad specs refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.domain.data_spec import DataSpec, select_rows, spec_catalog
from hindsight.trainer.domain.rows import TrainingRow

from .helpers import row

pytestmark = pytest.mark.unit


def _rows() -> list[TrainingRow]:
    return [
        row(0),
        row(1, symbol="BTCUSDT"),
        row(2, feature_schema_version=2),
        row(3, timeframe="1m"),
        row(4, symbol="BTCUSDT", timeframe="1m", feature_schema_version=2),
    ]


def test_version_only_selects_every_symbol_and_timeframe_of_that_version() -> None:
    spec = DataSpec(model_name="m", feature_schema_version=1)
    assert [r.signal_id for r in select_rows(spec, _rows())] == ["s0", "s1", "s3"]


def test_allow_lists_narrow_the_rows() -> None:
    by_symbol = DataSpec(model_name="m", feature_schema_version=1, symbols=["BTCUSDT"])
    assert [r.signal_id for r in select_rows(by_symbol, _rows())] == ["s1"]
    by_tf = DataSpec(model_name="m", feature_schema_version=2, timeframes=["1m"])
    assert [r.signal_id for r in select_rows(by_tf, _rows())] == ["s4"]
    both = DataSpec(model_name="m", feature_schema_version=1, symbols=["EURUSD"], timeframes=["1h"])
    assert [r.signal_id for r in select_rows(both, _rows())] == ["s0"]


def test_two_specs_over_one_stream_share_no_row() -> None:
    a = DataSpec(model_name="a", feature_schema_version=1)
    b = DataSpec(model_name="b", feature_schema_version=2)
    ids_a = {r.signal_id for r in select_rows(a, _rows())}
    ids_b = {r.signal_id for r in select_rows(b, _rows())}
    assert ids_a and ids_b and not ids_a & ids_b


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model_name": "a b", "feature_schema_version": 1}, "model_name"),
        ({"model_name": "m", "feature_schema_version": 0}, "feature_schema_version"),
        ({"model_name": "m", "feature_schema_version": 1, "symbols": []}, "symbols"),
        ({"model_name": "m", "feature_schema_version": 1, "timeframes": [""]}, "timeframes"),
        ({"model_name": "m", "feature_schema_version": 1, "target": "y_entry"}, "target"),
        ({"model_name": "m", "feature_schema_version": 1, "extra": 1}, "extra"),
    ],
)
def test_a_bad_spec_names_its_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DataSpec.model_validate(fields)
    assert field in str(info.value)


def test_the_default_model_gets_its_spec_from_the_settings_unless_declared() -> None:
    settings = TrainerSettings(
        database_url="",
        data_specs=[{"model_name": "other", "feature_schema_version": 2, "symbols": ["X"]}],
    )
    specs = settings.specs()
    assert specs["trade_success"] == DataSpec(model_name="trade_success", feature_schema_version=1)
    assert specs["other"].symbols == ("X",)
    declared = DataSpec(model_name="trade_success", feature_schema_version=3)
    assert spec_catalog([declared], specs["trade_success"])["trade_success"] == declared


def test_settings_read_specs_from_json_and_refuse_a_model_declared_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "HINDSIGHT_TRAINER_DATA_SPECS",
        '[{"model_name": "b", "feature_schema_version": 2, "timeframes": ["1m", "1h"]}]',
    )
    assert TrainerSettings(database_url="").specs()["b"].timeframes == ("1h", "1m")
    twice = (
        '[{"model_name": "b", "feature_schema_version": 2},'
        ' {"model_name": "b", "feature_schema_version": 3}]'
    )
    monkeypatch.setenv("HINDSIGHT_TRAINER_DATA_SPECS", twice)
    with pytest.raises(ValidationError, match="declared twice"):
        TrainerSettings(database_url="")


def test_the_content_hash_names_what_a_spec_selects_not_its_version() -> None:
    base = DataSpec(model_name="m", feature_schema_version=1, symbols=["B", "A"])
    same = DataSpec(model_name="m", feature_schema_version=1, symbols=["A", "B", "A"], version=3)
    assert base.content_hash() == same.content_hash()  # allow-lists are sets; version aside
    assert len(base.content_hash()) == 64
    others = [
        DataSpec(model_name="n", feature_schema_version=1, symbols=["A", "B"]),
        DataSpec(model_name="m", feature_schema_version=2, symbols=["A", "B"]),
        DataSpec(model_name="m", feature_schema_version=1, symbols=["A"]),
        DataSpec(model_name="m", feature_schema_version=1, symbols=["A", "B"], timeframes=["1h"]),
    ]
    assert len({base.content_hash(), *(o.content_hash() for o in others)}) == 5
    with pytest.raises(ValidationError, match="version"):
        DataSpec(model_name="m", feature_schema_version=1, version=0)
