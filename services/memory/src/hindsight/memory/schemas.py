"""What the memory API answers with: records as the API shows them, and the lists of them.

A record's metadata is the vector's own (free-form keys, scalar values), with every
mandatory key present and the trade's label; times are UTC, written with ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from hindsight.memory.domain.records import Scalar, full_metadata
from hindsight.memory.storage import StoredRecord

__all__ = [
    "CollectionsOverview",
    "LogicalCollection",
    "PhysicalCollectionCount",
    "PromptList",
    "RecordList",
    "RecordPublic",
    "SearchHit",
    "public_metadata",
]


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


def public_metadata(row: StoredRecord) -> dict[str, Scalar]:
    """The record's metadata as the API shows it: every mandatory key, the label columns."""
    metadata = full_metadata(row.metadata)
    metadata["user_label"] = row.user_label
    metadata["quality_grade"] = row.quality_grade
    return metadata


class SearchHit(_Public):
    """One search result."""

    id: str
    collection: str
    modality: str
    model: str
    document: str | None
    metadata: dict[str, Scalar]
    thumbnail_b64: str | None
    score: float
    """Cosine similarity (one ranked list) or the reciprocal-rank-fusion score."""
    distance: float | None
    """Cosine distance to the query; null for a keyword-only hit."""

    @classmethod
    def of(cls, row: StoredRecord, *, score: float, distance: float | None) -> SearchHit:
        """The hit of ``row``."""
        return cls(
            id=row.vector_id,
            collection=row.collection,
            modality=row.modality,
            model=row.model,
            document=row.document,
            metadata=public_metadata(row),
            thumbnail_b64=row.thumbnail_b64,
            score=score,
            distance=distance,
        )


class RecordPublic(_Public):
    """One record of ``GET /v1/records`` or ``GET /v1/prompts``."""

    id: str
    collection: str
    modality: str
    model: str
    document: str | None
    metadata: dict[str, Scalar]
    thumbnail_b64: str | None
    archived: bool
    timestamp: datetime
    """The record's event time."""
    archived_at: datetime | None

    @classmethod
    def of(cls, row: StoredRecord) -> RecordPublic:
        """The public view of ``row``."""
        return cls(
            id=row.vector_id,
            collection=row.collection,
            modality=row.modality,
            model=row.model,
            document=row.document,
            metadata=public_metadata(row),
            thumbnail_b64=row.thumbnail_b64,
            archived=row.archived_at is not None,
            timestamp=row.timestamp.astimezone(UTC),
            archived_at=None if row.archived_at is None else row.archived_at.astimezone(UTC),
        )


class RecordList(_Public):
    """Body of ``GET /v1/records``."""

    records: list[RecordPublic]
    count: int


class PromptList(_Public):
    """Body of ``GET /v1/prompts``: prompts_history records, newest first."""

    prompts: list[RecordPublic]
    count: int


class LogicalCollection(_Public):
    """Records of one logical collection (every modality and model)."""

    name: str
    records: int
    archived: int


class PhysicalCollectionCount(_Public):
    """Records of one Chroma collection."""

    name: str
    collection: str
    modality: str
    model: str
    records: int
    archived: int


class CollectionsOverview(_Public):
    """Body of ``GET /v1/collections``."""

    collections: list[LogicalCollection]
    physical: list[PhysicalCollectionCount]
