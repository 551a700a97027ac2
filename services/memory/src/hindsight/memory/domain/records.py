"""Memory records: physical collection names and the metadata Chroma stores."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hindsight.common.events import VECTOR_METADATA_KEYS

__all__ = [
    "INGESTED_KEY",
    "INGESTED_TS_KEY",
    "LOGICAL_COLLECTIONS",
    "MODALITIES",
    "TS_KEY",
    "Scalar",
    "chroma_metadata",
    "epoch_seconds",
    "format_timestamp",
    "full_metadata",
    "model_slug",
    "now_utc",
    "parse_timestamp",
    "physical_name",
]

LOGICAL_COLLECTIONS: tuple[str, ...] = ("trade_cases", "theory_docs", "prompts_history")
MODALITIES: tuple[str, ...] = ("image", "text")
# Keys memory owns in a record's metadata (labels, the numeric times for as_of and
# ingested_before). ``timestamp`` is the record's event time (the trade / bar / document
# time); ``ingested_at`` is when memory first stored the record (RFC 3339, also shown by
# the API). ``ts`` and ``ingested_ts`` are their epoch seconds, only in Chroma, because
# Chroma compares numbers only.
LABEL_KEYS: tuple[str, ...] = ("user_label", "quality_grade")
TS_KEY = "ts"
INGESTED_KEY = "ingested_at"
INGESTED_TS_KEY = "ingested_ts"
_CHROMA_ONLY = (TS_KEY, INGESTED_TS_KEY)

Scalar = str | int | float | bool | None
"""A value of a record's metadata (the keys are free-form; the values scalars, as in Chroma)."""


def model_slug(model: str) -> str:
    """``open_clip:ViT-B-32:random`` → ``open-clip-vit-b-32-random``."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return slug or "model"


def physical_name(collection: str, modality: str, model: str) -> str:
    """The Chroma collection of one logical collection, modality and model."""
    return f"{collection}__{modality}__{model_slug(model)}"


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 string (or datetime) → an aware UTC datetime; None when unusable."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def epoch_seconds(value: datetime) -> float:
    """Seconds since the epoch (what ``as_of`` compares with ``$lt``)."""
    return value.timestamp()


def full_metadata(metadata: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """The metadata as the API returns it: every mandatory key present (null when unknown)."""
    out: dict[str, Scalar] = dict.fromkeys(VECTOR_METADATA_KEYS)
    out.update({k: v for k, v in metadata.items() if k not in _CHROMA_ONLY})
    for key in (*LABEL_KEYS, INGESTED_KEY):
        out.setdefault(key, None)
    return out


def chroma_metadata(
    metadata: Mapping[str, Scalar], *, ts: float
) -> dict[str, str | int | float | bool]:
    """The metadata as Chroma stores it: no None values, plus the numeric ``ts`` and, when
    ``ingested_at`` is known, ``ingested_ts`` (records stored before it existed lack it)."""
    out: dict[str, str | int | float | bool] = {
        k: v for k, v in metadata.items() if v is not None and k not in _CHROMA_ONLY
    }
    out[TS_KEY] = float(ts)
    ingested = parse_timestamp(metadata.get(INGESTED_KEY))
    if ingested is not None:
        out[INGESTED_TS_KEY] = epoch_seconds(ingested)
    return out


def now_utc() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


def format_timestamp(value: datetime | None) -> str | None:
    """RFC 3339 UTC with ``Z``, or None."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
