"""Label exports: JSON Lines and CSV, same columns as the label files."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass

from hindsight.labeling.domain.labels import JsonScalar, LabelRecord

__all__ = ["EXPORT_FIELDS", "ExportRow", "csv_cell", "to_csv", "to_jsonl"]

# OWASP CSV injection: a spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

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


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRow:
    """A trade's current label with its item's symbol, run and LLM suggestion."""

    record: LabelRecord
    symbol: str | None
    run_id: str | None
    suggestion_label: str | None

    def fields(self) -> dict[str, JsonScalar]:
        """The export fields, in order (the label file's fields, then the item's)."""
        row = {
            **self.record.to_dict(),
            "suggestion_label": self.suggestion_label,
            "symbol": self.symbol,
            "run_id": self.run_id,
        }
        return {f: row[f] for f in EXPORT_FIELDS}


def to_jsonl(rows: Iterable[ExportRow]) -> str:
    """One JSON object per line, the export fields in order."""
    return "".join(json.dumps(row.fields(), ensure_ascii=False) + "\n" for row in rows)


def csv_cell(value: JsonScalar) -> str:
    """A CSV cell: empty for null, ``true``/``false``, and text a spreadsheet will not run
    (one starting with ``= + - @``, tab or carriage return gets a leading ``'``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(rows: Iterable[ExportRow]) -> str:
    """CSV with a header, every cell through :func:`csv_cell`."""
    out = io.StringIO()
    # RFC 4180's CRLF: Python 3.11 quotes only fields holding a line-terminator character,
    # so with "\n" alone a comment holding "\r" would break its row.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        writer.writerow([csv_cell(value) for value in row.fields().values()])
    return out.getvalue()
