"""Label exports: JSON Lines and CSV, same columns as the label files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["EXPORT_FIELDS", "to_csv", "to_jsonl"]

EXPORT_FIELDS: tuple[str, ...] = (
    "trade_id",
    "label",
    "quality_grade",
    "user_comment",
    "llm_agreed",
    "labeler_id",
    "timestamp",
    "screenshot",
    "chroma_vector_id",
    "suggestion_label",
    "symbol",
    "run_id",
)


def to_jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    """One JSON object per line, the export fields in order."""
    return "".join(
        json.dumps({f: row.get(f) for f in EXPORT_FIELDS}, ensure_ascii=False) + "\n"
        for row in rows
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV with a header; empty cell for null, ``true``/``false`` for booleans."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        writer.writerow([_cell(row.get(f)) for f in EXPORT_FIELDS])
    return out.getvalue()
