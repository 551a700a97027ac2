"""Training snapshots: the exact rows of a run as Parquet, and their content hash.

Layout under a version's folder (hive partitions, values URL-quoted)::

    snapshot/feature_schema_version=<v>/timeframe=<tf>/part-0.parquet

One file per partition, rows in the run's order (``ts``, then ``signal_id``). Columns:
``signal_id, seq, symbol, side, ts, occurred_at, closed_at, result, target, entry_price,
exit_price, realised_r, label, block`` then ``feature.<name>`` (float64, null when missing)
for each of the run's feature names in order; ``block`` says what the row was used for
(train / validation / test / embargoed). The content hash is the sha256 of the lines
``<relative path>\\n<sha256 of the file>\\n`` over the files sorted by path, so the same
rows written again (same pyarrow) give the same hash.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq

from hindsight.common.artifacts import sha256_file
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.rows import TrainingRow, target

__all__ = [
    "FEATURE_PREFIX",
    "SNAPSHOT_DIR",
    "Snapshot",
    "read_snapshot",
    "snapshot_hash",
    "write_snapshot",
]

SNAPSHOT_DIR = "snapshot"
FEATURE_PREFIX = "feature."
_PART = "part-0.parquet"
_TS = pa.timestamp("us", tz="UTC")
_BASE = pa.schema(
    [
        ("signal_id", pa.string()),
        ("seq", pa.int64()),
        ("symbol", pa.string()),
        ("side", pa.string()),
        ("ts", _TS),
        ("occurred_at", _TS),
        ("closed_at", _TS),
        ("result", pa.string()),
        ("target", pa.int8()),
        ("entry_price", pa.float64()),
        ("exit_price", pa.float64()),
        ("realised_r", pa.float64()),
        ("label", pa.string()),
        ("block", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a written snapshot holds: its hash and row counts."""

    sha256: str
    rows: int
    partitions: dict[str, int]
    """Rows per partition folder (``feature_schema_version=1/timeframe=1h``)."""
    blocks: dict[str, int]
    """Rows per use (train, validation, test, embargoed)."""

    def to_dict(self) -> JsonObject:
        """For ``metrics.json`` (``training_snapshot``)."""
        return {
            "path": SNAPSHOT_DIR,
            "sha256": self.sha256,
            "rows": self.rows,
            "partitions": dict(sorted(self.partitions.items())),
            "blocks": dict(sorted(self.blocks.items())),
            "hash": "sha256 of '<path>\\n<sha256 of file>\\n' over the files sorted by path",
        }


def _partition(row: TrainingRow) -> str:
    return (
        f"feature_schema_version={row.feature_schema_version}"
        f"/timeframe={quote(row.timeframe, safe='')}"
    )


def write_snapshot(
    root: Path,
    rows: Sequence[TrainingRow],
    blocks: Sequence[str],
    feature_names: Sequence[str],
) -> Snapshot:
    """Write ``rows`` (in run order, ``blocks[i]`` the use of ``rows[i]``) under
    ``root/snapshot``; returns the hash and counts."""
    if len(blocks) != len(rows):
        raise ValueError(f"{len(blocks)} block names for {len(rows)} rows")
    schema = pa.schema(
        list(_BASE) + [(FEATURE_PREFIX + name, pa.float64()) for name in feature_names]
    )
    groups: defaultdict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[_partition(row)].append(i)
    base = root / SNAPSHOT_DIR
    counts: dict[str, int] = {}
    for part, indexes in sorted(groups.items()):
        chosen = [rows[i] for i in indexes]
        columns: dict[str, list[object]] = {
            "signal_id": [r.signal_id for r in chosen],
            "seq": [r.seq for r in chosen],
            "symbol": [r.symbol for r in chosen],
            "side": [r.side for r in chosen],
            "ts": [r.ts for r in chosen],
            "occurred_at": [r.occurred_at for r in chosen],
            "closed_at": [r.closed_at for r in chosen],
            "result": [r.result for r in chosen],
            "target": [int(v) for v in target(chosen)],
            "entry_price": [r.entry_price for r in chosen],
            "exit_price": [r.exit_price for r in chosen],
            "realised_r": [r.realised_r for r in chosen],
            "label": [r.label for r in chosen],
            "block": [blocks[i] for i in indexes],
        }
        for name in feature_names:
            columns[FEATURE_PREFIX + name] = [r.features.get(name) for r in chosen]
        folder = base / part
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pydict(columns, schema=schema)
        pq.write_table(table, folder / _PART, compression="zstd")
        counts[part] = len(indexes)
    used: defaultdict[str, int] = defaultdict(int)
    for block in blocks:
        used[block] += 1
    return Snapshot(snapshot_hash(root), len(rows), counts, dict(used))


def snapshot_hash(root: Path) -> str:
    """The content hash of the snapshot under ``root/snapshot`` (see the module doc)."""
    base = root / SNAPSHOT_DIR
    files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for rel in files:
        digest.update(f"{rel}\n{sha256_file(base / rel)}\n".encode())
    return digest.hexdigest()


def read_snapshot(root: Path) -> tuple[list[TrainingRow], list[str], list[str]]:
    """The rows, their blocks and the feature names of the snapshot under ``root/snapshot``
    (partitions in path order, rows in file order), as :func:`write_snapshot` took them."""
    base = root / SNAPSHOT_DIR
    rows: list[TrainingRow] = []
    blocks: list[str] = []
    names: list[str] = []
    for path in sorted(base.rglob(_PART)):
        parts = dict(p.split("=", 1) for p in path.relative_to(base).parent.parts)
        version, timeframe = int(parts["feature_schema_version"]), unquote(parts["timeframe"])
        table = pq.read_table(path)
        names = [
            c.removeprefix(FEATURE_PREFIX)
            for c in table.column_names
            if c.startswith(FEATURE_PREFIX)
        ]
        for rec in table.to_pylist():
            rows.append(
                TrainingRow(
                    signal_id=rec["signal_id"],
                    symbol=rec["symbol"],
                    timeframe=timeframe,
                    side=rec["side"],
                    ts=rec["ts"],
                    features={n: rec[FEATURE_PREFIX + n] for n in names},
                    feature_schema_version=version,
                    closed_at=rec["closed_at"],
                    result=rec["result"],
                    entry_price=rec["entry_price"],
                    exit_price=rec["exit_price"],
                    realised_r=rec["realised_r"],
                    label=rec["label"],
                    seq=rec["seq"],
                    occurred_at=rec["occurred_at"],
                )
            )
            blocks.append(rec["block"])
    return rows, blocks, names
