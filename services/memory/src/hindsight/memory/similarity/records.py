"""Typed records of the Similarity-API: what is stored, what a query returns, and the checks
that turn bad input into an error naming the field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import SignalLabeled

__all__ = [
    "EMBED_DIM",
    "MAX_K",
    "NearestResult",
    "Neighbour",
    "PatternEmbed",
    "PatternOutcome",
    "UpsertCounts",
    "aware",
    "checked_embed",
    "outcome_of",
]

EMBED_DIM = 64
"""Pattern-CNN embedding size (the FC(64) layer)."""
MAX_K = 1000
"""Most neighbours one query may ask for (pgvector's hnsw.ef_search ceiling)."""


def checked_embed(values: Sequence[float], *, field: str = "embed") -> tuple[float, ...]:
    """``values`` as a tuple of EMBED_DIM finite floats with a non-zero norm (cosine needs one)."""
    if isinstance(values, str | bytes) or len(values) != EMBED_DIM:
        raise InvalidInputError(f"{field} must hold {EMBED_DIM} numbers", field=field)
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise InvalidInputError(f"{field} holds a NaN or infinite value", field=field)
    if not any(out):
        raise InvalidInputError(f"{field} is the zero vector (no direction)", field=field)
    return out


def aware(value: datetime, *, field: str) -> datetime:
    """``value`` itself when it carries a time zone; naive times are ambiguous."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(f"{field} must carry a time zone", field=field)
    return value


def _text(value: str, *, field: str) -> str:
    if not value or not value.strip():
        raise InvalidInputError(f"{field} must not be empty", field=field)
    return value


def _finite(value: float, *, field: str) -> float:
    out = float(value)
    if not math.isfinite(out):
        raise InvalidInputError(f"{field} must be a finite number", field=field)
    return out


@dataclass(frozen=True, slots=True)
class PatternEmbed:
    """One window's Pattern-CNN output, as written to ``pattern_embeds``."""

    signal_id: str
    symbol: str
    timeframe: str
    ts: datetime
    """The window's end: the as-of time of the embedding."""
    embed: tuple[float, ...]
    pattern: str
    quality: float
    pole_katr: float
    model_version: str

    def __post_init__(self) -> None:
        for name in ("signal_id", "symbol", "timeframe", "pattern", "model_version"):
            _text(getattr(self, name), field=name)
        aware(self.ts, field="ts")
        object.__setattr__(self, "embed", checked_embed(self.embed))
        object.__setattr__(self, "quality", _finite(self.quality, field="quality"))
        object.__setattr__(self, "pole_katr", _finite(self.pole_katr, field="pole_katr"))


@dataclass(frozen=True, slots=True)
class PatternOutcome:
    """A signal's realised R and when it became known (the label's occurred_at)."""

    signal_id: str
    realised_r: float
    known_at: datetime

    def __post_init__(self) -> None:
        _text(self.signal_id, field="signal_id")
        object.__setattr__(self, "realised_r", _finite(self.realised_r, field="realised_r"))
        aware(self.known_at, field="known_at")


def outcome_of(event: SignalLabeled) -> PatternOutcome:
    """The outcome a Back-Labeler ``signal.labeled`` event carries: known at its occurred_at."""
    return PatternOutcome(event.signal_id, event.realised_r, event.occurred_at)


@dataclass(frozen=True, slots=True)
class UpsertCounts:
    """What a batched upsert did."""

    inserted: int
    updated: int
    unchanged: int
    """Rows already stored exactly as given (an idempotent replay)."""


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One stored window near the query."""

    signal_id: str
    similarity: float
    """Cosine similarity to the query (1 - pgvector's cosine distance)."""
    pattern: str
    quality: float
    realised_r: float | None
    ts: datetime
    symbol: str
    timeframe: str
    outcome_known_at: datetime | None


@dataclass(frozen=True, slots=True)
class NearestResult:
    """Neighbours, most similar first, with the scores derived from them."""

    neighbours: tuple[Neighbour, ...]
    sim_conf: float | None
    """mean(top-k quality) × mean(top-k cosine); None without neighbours."""
    hist_rr_pct: float | None
    """The p-quantile of the neighbours' realised R; None without neighbours."""
    exact: bool
    """True when the answer came from an exact scan (the approximate one fell short of k)."""
