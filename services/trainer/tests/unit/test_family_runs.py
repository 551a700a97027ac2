"""A family run's pure parts: the frame's columns from labelled rows, the releases on disk."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.common.family import FamilyCard, FamilyMember, family_dir
from hindsight.trainer.domain.family_frame import FamilyFrame
from hindsight.trainer.domain.family_rows import LabelledSignal, training_row
from hindsight.trainer.domain.family_spec import next_family_version
from hindsight.trainer.family_runs import family_columns, releases_of

pytestmark = pytest.mark.unit

TS = datetime(2024, 5, 1, tzinfo=UTC)


def _row(i: int, **overrides: object) -> LabelledSignal:
    fields: dict[str, object] = {
        "signal_id": f"s{i}",
        "seq": i,
        "symbol": "EURUSD",
        "timeframe": "15m",
        "side": "sell",
        "ts": TS + timedelta(minutes=15 * i),
        "occurred_at": TS + timedelta(minutes=15 * i),
        "features": {"a": float(i), "b": None},
        "feature_schema_version": 1,
        "entry_price": None,
        "label_spec": "0123456789abcdef",
        "revision": 0,
        "horizon_bars": 4,
        "y_entry": i % 2,
        "realised_r": 1.0,
        "runup_r": 1.5,
        "dd_katr": None,
        "best_offset_katr": 0.2,
        "liquidity_cluster": None,
    }
    fields.update(overrides)
    return LabelledSignal(**fields)  # type: ignore[arg-type]


def test_the_frame_gets_every_column_with_nan_for_what_a_label_or_signal_lacks() -> None:
    rows = [training_row(_row(i)) for i in range(3)]
    columns = family_columns(rows, ["a", "b"])
    assert columns["a"] == [0.0, 1.0, 2.0]
    assert all(math.isnan(v) for v in columns["b"])  # type: ignore[arg-type]
    assert all(math.isnan(v) for v in columns["sl_katr"])  # type: ignore[arg-type]
    assert columns["rr_target"] == [1.5] * 3 and columns["y_entry"] == [0.0, 1.0, 0.0]
    assert columns["closed_at"][0] == TS + timedelta(hours=1)
    frame = FamilyFrame.from_columns(columns, features=["a", "b"])
    assert len(frame) == 3 and frame.feature_names == ["a", "b"]
    assert list(frame.cluster) == [None, None, None]


def test_a_feature_named_like_a_frame_column_is_refused_naming_it() -> None:
    rows = [training_row(_row(i, features={"symbol": 1.0})) for i in range(2)]
    with pytest.raises(InvalidInputError) as info:
        FamilyFrame.from_columns(family_columns(rows, ["symbol"]), features=["symbol"])
    assert info.value.field == "symbol"


def _card(version: str, schema: int) -> FamilyCard:
    sha = "0" * 64
    quantile = {"kind": "quantile", "output": "quantiles", "alphas": [0.5], "served_alpha": 0.5}
    members = [
        FamilyMember(
            name="entry_pooled",
            head="entry",
            kind="binary",
            target="y_entry",
            version=version,
            file="entry_pooled.onnx",
            sha256=sha,
            features=["a"],
            output="probabilities",
        ),
        *(
            FamilyMember.model_validate(
                {
                    "name": head,
                    "head": head,
                    "target": head,
                    "version": version,
                    "file": f"{head}.onnx",
                    "sha256": sha,
                    "features": ["a"],
                }
                | quantile
            )
            for head in ("risk", "rr", "offset")
        ),
    ]
    return FamilyCard(
        family="playbook",
        version=version,
        training_run_id="r",
        created_at=TS,
        feature_schema_version=schema,
        features=["a"],
        members=members,
        entry_routing={"H": "entry_pooled", "M": "entry_pooled", "L": "entry_pooled"},
    )


def test_releases_on_disk_give_the_next_version_and_nothing_else_counts(tmp_path: Path) -> None:
    assert releases_of(tmp_path, "playbook") == []
    for version, schema in (("v1_0_0", 1), ("v1_1_0", 1), ("v2_0_0", 2)):
        directory = family_dir(tmp_path, "playbook", version)
        directory.mkdir(parents=True)
        (directory / "metrics.json").write_text(_card(version, schema).model_dump_json())
    broken = family_dir(tmp_path, "playbook", "v2_1_0")
    broken.mkdir()
    (broken / "metrics.json").write_text("{")
    (tmp_path / "families" / "playbook" / ".v2_2_0.17.partial").mkdir()
    (tmp_path / "families" / "playbook" / ".snapshot-x").mkdir()
    found = sorted(releases_of(tmp_path, "playbook"))
    assert found == [("v1_0_0", 1), ("v1_1_0", 1), ("v2_0_0", 2), ("v2_1_0", None)]
    assert next_family_version(found, 2) == "v3_0_0"  # the newest is unreadable
    assert next_family_version(found[:3], 2) == "v2_1_0"
