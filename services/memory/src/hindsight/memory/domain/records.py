"""Memory records: physical collection names and the metadata Chroma stores."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hindsight.common.events import VECTOR_METADATA_KEYS

__all__ = [
    "LOGICAL_COLLECTIONS",
    "MODALITIES",
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
# Keys memory owns in a record's metadata (labels, the numeric time for as_of).
LABEL_KEYS: tuple[str, ...] = ("user_label", "quality_grade")
TS_KEY = "ts"

Scalar = str | int | float | bool | None


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
    out.update({k: v for k, v in metadata.items() if k != TS_KEY})
    for key in LABEL_KEYS:
        out.setdefault(key, None)
    return out


def chroma_metadata(
    metadata: Mapping[str, Scalar], *, ts: float
) -> dict[str, str | int | float | bool]:
    """The metadata as Chroma stores it: no None values, plus the numeric ``ts``."""
    out: dict[str, str | int | float | bool] = {
        k: v for k, v in metadata.items() if v is not None and k != TS_KEY
    }
    out[TS_KEY] = float(ts)
    return out


def now_utc() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


def format_timestamp(value: datetime | None) -> str | None:
    """RFC 3339 UTC with ``Z``, or None."""
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
