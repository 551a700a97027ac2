"""Training snapshots: Parquet partitions, the content hash, a rebuild gives the same hash."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hindsight.trainer.domain.rows import TrainingRow
from hindsight.trainer.domain.training import ordered
from hindsight.trainer.snapshot import SNAPSHOT_DIR, read_snapshot, snapshot_hash, write_snapshot

from .helpers import row

pytestmark = pytest.mark.unit
NAMES = ["a", "b"]


def _rows() -> list[TrainingRow]:
    rows = [row(i) for i in range(12)]
    rows[3] = row(3, timeframe="1m", label="rejected", realised_r=1.5)
    rows[5] = row(5, timeframe="4/h", features={"a": None, "b": 2.0})  # quoted in the path
    rows[7] = row(7, feature_schema_version=2)
    return ordered(rows)


def _blocks(n: int) -> list[str]:
    return ["train"] * (n - 4) + ["embargoed", "validation", "test", "test"]


def test_partitions_by_version_and_timeframe_with_the_rows_and_their_use(tmp_path: Path) -> None:
    rows = _rows()
    snap = write_snapshot(tmp_path, rows, _blocks(len(rows)), NAMES)
    assert snap.rows == 12
    assert snap.partitions == {
        "feature_schema_version=1/timeframe=1h": 9,
        "feature_schema_version=1/timeframe=1m": 1,
        "feature_schema_version=1/timeframe=4%2Fh": 1,
        "feature_schema_version=2/timeframe=1h": 1,
    }
    assert snap.blocks == {"train": 8, "embargoed": 1, "validation": 1, "test": 2}
    table = pq.read_table(tmp_path / SNAPSHOT_DIR / "feature_schema_version=1/timeframe=1h")
    assert table.num_rows == 9
    assert "feature.a" in table.column_names and "target" in table.column_names
    assert snap.sha256 == snapshot_hash(tmp_path)


def test_a_rebuild_from_the_snapshot_gives_the_same_hash(tmp_path: Path) -> None:
    rows = _rows()
    first = write_snapshot(tmp_path / "one", rows, _blocks(len(rows)), NAMES)
    back, blocks, names = read_snapshot(tmp_path / "one")
    assert names == NAMES and sorted(r.signal_id for r in back) == sorted(r.signal_id for r in rows)
    by_id = {r.signal_id: r for r in back}
    assert by_id["s3"].label == "rejected" and by_id["s3"].realised_r == 1.5
    assert by_id["s5"].timeframe == "4/h" and by_id["s5"].features["a"] is None
    assert by_id["s7"].feature_schema_version == 2 and by_id["s0"].ts == rows[0].ts
    again = write_snapshot(tmp_path / "two", back, blocks, names)
    assert again.sha256 == first.sha256


def test_the_hash_changes_with_one_value_or_one_use(tmp_path: Path) -> None:
    rows = _rows()
    base = write_snapshot(tmp_path / "base", rows, _blocks(len(rows)), NAMES).sha256
    changed = list(rows)
    changed[0] = row(0, features={"a": 0.5, "b": 0.0})
    assert write_snapshot(tmp_path / "value", changed, _blocks(len(rows)), NAMES).sha256 != base
    blocks = _blocks(len(rows))
    blocks[0] = "validation"
    assert write_snapshot(tmp_path / "use", rows, blocks, NAMES).sha256 != base


def test_blocks_must_match_the_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="block names"):
        write_snapshot(tmp_path, _rows(), ["train"], NAMES)
