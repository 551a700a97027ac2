"""PostgreSQL schema ``memory``: the link table (vector ↔ file ↔ run ↔ trade) and labels.

Writes take :class:`RecordRow`; reads return frozen records: :class:`StoredRecord` (a link
table row), :class:`StoredLabel` and :class:`CollectionCount`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg

from hindsight.common.errors import UnavailableError
from hindsight.memory.domain.records import Scalar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "MIGRATIONS",
    "CollectionCount",
    "RecordMetadata",
    "RecordRow",
    "RecordUpserted",
    "Storage",
    "StoredLabel",
    "StoredRecord",
]

MIGRATIONS = Path(__file__).parent / "migrations"

_D = TypeVar("_D", bound="DataclassInstance")

_COLUMNS = (
    "vector_id, collection, physical, modality, model, file_path, run_id, trade_id, "
    'setup_id, "timestamp", document, metadata, thumbnail_b64, user_label, quality_grade, '
    "archived_at, archived_embedding, created_at, updated_at"
)


RecordMetadata = dict[str, Scalar]
"""A vector's metadata: free-form keys (the mandatory ones, plus whatever the producer sent),
scalar values."""


def _from_values(cls: type[_D], values: Mapping[str, Any]) -> _D:
    """The dataclass ``cls`` of a row's (or a backup line's) values: its fields are taken (a
    missing one raises KeyError), metadata that arrives as JSON text (jsonb) is parsed."""
    known = {f.name: values[f.name] for f in fields(cls)}
    if isinstance(known.get("metadata"), str):
        known["metadata"] = json.loads(known["metadata"])
    return cls(**known)


@dataclass(frozen=True, slots=True)
class RecordRow:
    """What memory writes for one vector (the link table's columns)."""

    vector_id: str
    collection: str
    physical: str
    modality: str
    model: str
    timestamp: datetime
    metadata: RecordMetadata
    file_path: str | None = None
    run_id: str | None = None
    trade_id: str | None = None
    setup_id: str | None = None
    document: str | None = None
    thumbnail_b64: str | None = None
    user_label: str | None = None
    quality_grade: str | None = None
    created_at: datetime | None = None
    """When memory first stored the record (its ingestion time); now when None."""


@dataclass(frozen=True, slots=True)
class RecordUpserted:
    """What an upsert did to one record."""

    vector_id: str
    inserted: bool
    old_physical: str | None
    """The Chroma collection that held the vector before (None when it is new)."""


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One row of the link table, as stored (also a line of a backup's records.jsonl)."""

    vector_id: str
    collection: str
    physical: str
    """The Chroma collection that holds the vector."""
    modality: str
    model: str
    file_path: str | None
    run_id: str | None
    trade_id: str | None
    setup_id: str | None
    timestamp: datetime
    """The record's event time (trade, bar or document time)."""
    document: str | None
    metadata: RecordMetadata
    thumbnail_b64: str | None
    user_label: str | None
    quality_grade: str | None
    archived_at: datetime | None
    archived_embedding: list[float] | None
    """The vector, kept while the record is archived (out of Chroma)."""
    created_at: datetime
    """When memory first stored the record (its ingestion time)."""
    updated_at: datetime

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Self:
        """The record of a database row or of a backup line (times already revived)."""
        return _from_values(cls, values)


@dataclass(frozen=True, slots=True)
class StoredLabel:
    """The latest label of one labeler on one trade (also a line of labels.jsonl)."""

    trade_id: str
    labeler_id: str
    label: str
    quality_grade: str | None
    occurred_at: datetime

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Self:
        """The label of a database row or of a backup line."""
        return _from_values(cls, values)


@dataclass(frozen=True, slots=True)
class CollectionCount:
    """Active and archived records of one physical collection."""

    collection: str
    """The logical collection."""
    physical: str
    modality: str
    model: str
    records: int
    """Active (not archived) records."""
    archived: int


class Storage:
    """asyncpg repository; ``pool`` is set by the app when the database part starts."""

    def __init__(self, pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool

    def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise UnavailableError("database not connected")
        return self.pool

    async def ping(self) -> None:
        """Readiness: one round trip."""
        await self._pool().fetchval("SELECT 1")

    # --- records ---------------------------------------------------------------------

    async def upsert_many(self, rows: Sequence[RecordRow]) -> list[RecordUpserted]:
        """Insert or replace by vector_id, in one statement (one row per vector_id).

        Each row comes back with whether it was new and the physical collection that held
        it before (None when new).
        """
        columns: list[list[object]] = [[] for _ in range(16)]
        for row in rows:
            values = (
                row.vector_id,
                row.collection,
                row.physical,
                row.modality,
                row.model,
                row.file_path,
                row.run_id,
                row.trade_id,
                row.setup_id,
                row.timestamp,
                row.document,
                json.dumps(row.metadata),
                row.thumbnail_b64,
                row.user_label,
                row.quality_grade,
                row.created_at,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        # unnest of one array per column: one round trip whatever the batch size. The CTE
        # "old" reads the rows as they were before the INSERT (one snapshot).
        result = await self._pool().fetch(
            """
            WITH old AS (SELECT vector_id, physical FROM records
                         WHERE vector_id = ANY($1::text[])),
            written AS (
                INSERT INTO records (vector_id, collection, physical, modality, model,
                                     file_path, run_id, trade_id, setup_id, "timestamp",
                                     document, metadata, thumbnail_b64, user_label,
                                     quality_grade, created_at)
                SELECT u.vector_id, u.collection, u.physical, u.modality, u.model, u.file_path,
                       u.run_id, u.trade_id, u.setup_id, u.ts, u.document, u.metadata::jsonb,
                       u.thumbnail_b64, u.user_label, u.quality_grade,
                       coalesce(u.created_at, now())
                FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                            $6::text[], $7::text[], $8::text[], $9::text[],
                            $10::timestamptz[], $11::text[], $12::text[], $13::text[],
                            $14::text[], $15::text[], $16::timestamptz[])
                     AS u(vector_id, collection, physical, modality, model, file_path,
                          run_id, trade_id, setup_id, ts, document, metadata, thumbnail_b64,
                          user_label, quality_grade, created_at)
                ON CONFLICT (vector_id) DO UPDATE SET
                    collection = EXCLUDED.collection, physical = EXCLUDED.physical,
                    modality = EXCLUDED.modality, model = EXCLUDED.model,
                    file_path = EXCLUDED.file_path, run_id = EXCLUDED.run_id,
                    trade_id = EXCLUDED.trade_id, setup_id = EXCLUDED.setup_id,
                    "timestamp" = EXCLUDED."timestamp", document = EXCLUDED.document,
                    metadata = EXCLUDED.metadata, thumbnail_b64 = EXCLUDED.thumbnail_b64,
                    user_label = EXCLUDED.user_label, quality_grade = EXCLUDED.quality_grade,
                    archived_at = NULL, archived_embedding = NULL, updated_at = now()
                RETURNING vector_id, (xmax = 0) AS inserted)
            SELECT written.vector_id, written.inserted, old.physical AS old_physical
            FROM written LEFT JOIN old USING (vector_id)
            """,
            *columns,
        )
        return [
            RecordUpserted(r["vector_id"], bool(r["inserted"]), r["old_physical"]) for r in result
        ]

    async def created_at_many(self, vector_ids: Sequence[str]) -> dict[str, datetime]:
        """When each stored record among ``vector_ids`` was first stored (new ones absent)."""
        rows = await self._pool().fetch(
            "SELECT vector_id, created_at FROM records WHERE vector_id = ANY($1::text[])",
            list(vector_ids),
        )
        return {r["vector_id"]: r["created_at"] for r in rows}

    async def get_many(self, vector_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """Rows by vector_id (missing ids are absent)."""
        if not vector_ids:
            return {}
        rows = await self._pool().fetch(
            f"SELECT {_COLUMNS} FROM records WHERE vector_id = ANY($1::text[])", list(vector_ids)
        )
        return {r["vector_id"]: StoredRecord.of(r) for r in rows}

    async def get(self, vector_id: str) -> StoredRecord | None:
        """One row, or None."""
        return (await self.get_many([vector_id])).get(vector_id)

    async def find(
        self,
        *,
        run_id: str | None = None,
        trade_id: str | None = None,
        collection: str | None = None,
        include_archived: bool = False,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[StoredRecord]:
        """Rows of a run and/or a trade, oldest first."""
        rows = await self._pool().fetch(
            f"""SELECT {_COLUMNS} FROM records
                WHERE ($1::text IS NULL OR run_id = $1) AND ($2::text IS NULL OR trade_id = $2)
                  AND ($3::text IS NULL OR collection = $3)
                  AND ($4 OR archived_at IS NULL)
                ORDER BY "timestamp", vector_id LIMIT $5 OFFSET $6""",
            run_id,
            trade_id,
            collection,
            include_archived,
            limit,
            offset,
        )
        return [StoredRecord.of(r) for r in rows]

    async def keyword_search(
        self,
        text: str,
        *,
        collections: Sequence[str],
        before: datetime | None,
        ingested_before: datetime | None = None,
        limit: int,
    ) -> list[tuple[str, str]]:
        """Full-text hits (vector_id, physical), best first; archived records excluded.

        ``before`` bounds the event time, ``ingested_before`` the ingestion time (created_at).
        """
        rows = await self._pool().fetch(
            """SELECT vector_id, physical FROM records,
                      websearch_to_tsquery('english', $1) AS q
               WHERE document_tsv @@ q AND collection = ANY($2::text[])
                 AND archived_at IS NULL AND ($3::timestamptz IS NULL OR "timestamp" < $3)
                 AND ($5::timestamptz IS NULL OR created_at < $5)
               ORDER BY ts_rank_cd(document_tsv, q) DESC, "timestamp" DESC, vector_id
               LIMIT $4""",
            text,
            list(collections),
            before,
            limit,
            ingested_before,
        )
        return [(r["vector_id"], r["physical"]) for r in rows]

    async def delete_rows(self, vector_ids: Sequence[str]) -> int:
        """Remove rows for good."""
        status = await self._pool().execute(
            "DELETE FROM records WHERE vector_id = ANY($1::text[])", list(vector_ids)
        )
        return int(status.split()[-1])

    async def ids_with_prefix_key(self, collection: str, doc_key: str) -> list[str]:
        """Vector ids of an ingested document's chunks (metadata ``doc_key``)."""
        rows = await self._pool().fetch(
            "SELECT vector_id FROM records WHERE collection = $1 AND metadata->>'doc_key' = $2",
            collection,
            doc_key,
        )
        return [r["vector_id"] for r in rows]

    async def counts(self) -> list[CollectionCount]:
        """Active and archived rows per logical and physical collection."""
        rows = await self._pool().fetch(
            """SELECT collection, physical, modality, model,
                      count(*) FILTER (WHERE archived_at IS NULL) AS records,
                      count(*) FILTER (WHERE archived_at IS NOT NULL) AS archived
               FROM records GROUP BY collection, physical, modality, model
               ORDER BY collection, physical"""
        )
        return [CollectionCount(**dict(r)) for r in rows]

    async def list_prompts(self, *, limit: int, trade_id: str | None) -> list[StoredRecord]:
        """prompts_history rows, newest first."""
        rows = await self._pool().fetch(
            f"""SELECT {_COLUMNS} FROM records
                WHERE collection = 'prompts_history' AND archived_at IS NULL
                  AND ($2::text IS NULL OR trade_id = $2)
                ORDER BY "timestamp" DESC, vector_id LIMIT $1""",
            limit,
            trade_id,
        )
        return [StoredRecord.of(r) for r in rows]

    # --- labels ----------------------------------------------------------------------

    async def save_label(
        self,
        *,
        trade_id: str,
        labeler_id: str,
        label: str,
        quality_grade: str | None,
        occurred_at: datetime,
    ) -> bool:
        """Keep the label when it is not older than the stored one; True when kept."""
        status = await self._pool().execute(
            """INSERT INTO labels (trade_id, labeler_id, label, quality_grade, occurred_at)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (trade_id, labeler_id) DO UPDATE SET
                   label = EXCLUDED.label, quality_grade = EXCLUDED.quality_grade,
                   occurred_at = EXCLUDED.occurred_at
               WHERE labels.occurred_at <= EXCLUDED.occurred_at""",
            trade_id,
            labeler_id,
            label,
            quality_grade,
            occurred_at,
        )
        return bool(str(status).split()[-1] != "0")

    async def effective_label(self, trade_id: str) -> tuple[str, str | None] | None:
        """The trade's most recent label over all labelers, or None."""
        row = await self._pool().fetchrow(
            """SELECT label, quality_grade FROM labels WHERE trade_id = $1
               ORDER BY occurred_at DESC, labeler_id LIMIT 1""",
            trade_id,
        )
        return None if row is None else (row["label"], row["quality_grade"])

    async def effective_labels(
        self, trade_ids: Collection[str]
    ) -> dict[str, tuple[str, str | None]]:
        """The most recent label over all labelers of each labelled trade among ``trade_ids``."""
        rows = await self._pool().fetch(
            """SELECT DISTINCT ON (trade_id) trade_id, label, quality_grade FROM labels
               WHERE trade_id = ANY($1::text[])
               ORDER BY trade_id, occurred_at DESC, labeler_id""",
            list(trade_ids),
        )
        return {r["trade_id"]: (r["label"], r["quality_grade"]) for r in rows}

    async def apply_label(
        self, trade_id: str, label: str, quality_grade: str | None
    ) -> list[StoredRecord]:
        """Write the label onto every row of the trade; returns the active rows changed."""
        rows = await self._pool().fetch(
            f"""UPDATE records SET user_label = $2, quality_grade = $3,
                       metadata = metadata || jsonb_build_object(
                           'user_label', $2::text, 'quality_grade', $3::text),
                       updated_at = now()
                WHERE trade_id = $1
                RETURNING {_COLUMNS}""",
            trade_id,
            label,
            quality_grade,
        )
        return [StoredRecord.of(r) for r in rows if r["archived_at"] is None]

    # --- retention -------------------------------------------------------------------

    async def expired(
        self, before: datetime, *, limit: int, include_archived: bool = False
    ) -> list[StoredRecord]:
        """Rows stored before ``before`` (active ones; archived too when asked).

        By ingestion time (created_at), not event time: a backtest that stores 2017 trades
        today must not see them aged out at once.
        """
        rows = await self._pool().fetch(
            f"""SELECT {_COLUMNS} FROM records
                WHERE ($3 OR archived_at IS NULL) AND created_at < $1
                ORDER BY created_at LIMIT $2""",
            before,
            limit,
            include_archived,
        )
        return [StoredRecord.of(r) for r in rows]

    async def mark_archived(self, items: Sequence[tuple[str, list[float]]]) -> None:
        """Archive rows, keeping each vector so the record can be restored."""
        await self._pool().executemany(
            """UPDATE records SET archived_at = now(), archived_embedding = $2::real[],
                      updated_at = now() WHERE vector_id = $1""",
            [(vid, emb) for vid, emb in items],
        )

    async def archived(self, vector_ids: Sequence[str] | None) -> list[StoredRecord]:
        """Archived rows (all, or the given ids)."""
        rows = await self._pool().fetch(
            f"""SELECT {_COLUMNS} FROM records WHERE archived_at IS NOT NULL
                AND ($1::text[] IS NULL OR vector_id = ANY($1::text[]))
                ORDER BY "timestamp", vector_id""",
            None if vector_ids is None else list(vector_ids),
        )
        return [StoredRecord.of(r) for r in rows]

    async def mark_restored(self, vector_ids: Sequence[str]) -> None:
        """Un-archive rows (their vectors are back in Chroma)."""
        await self._pool().execute(
            """UPDATE records SET archived_at = NULL, archived_embedding = NULL,
                      updated_at = now() WHERE vector_id = ANY($1::text[])""",
            list(vector_ids),
        )

    # --- backup ----------------------------------------------------------------------

    async def export_records(self, *, batch: int = 2000) -> AsyncIterator[StoredRecord]:
        """Every row, by vector_id (keyset pagination: no long-lived cursor)."""
        last = ""
        while True:
            rows = await self._pool().fetch(
                f"SELECT {_COLUMNS} FROM records WHERE vector_id > $1 ORDER BY vector_id LIMIT $2",
                last,
                batch,
            )
            for r in rows:
                yield StoredRecord.of(r)
            if len(rows) < batch:
                return
            last = rows[-1]["vector_id"]

    async def export_labels(self) -> list[StoredLabel]:
        """Every stored label."""
        rows = await self._pool().fetch(
            "SELECT trade_id, labeler_id, label, quality_grade, occurred_at FROM labels "
            "ORDER BY trade_id, labeler_id"
        )
        return [StoredLabel.of(r) for r in rows]

    async def wipe(self) -> None:
        """Empty both tables (restore starts from nothing)."""
        await self._pool().execute("TRUNCATE records, labels")

    async def import_records(self, rows: Sequence[StoredRecord]) -> None:
        """Insert exported rows as they were."""
        await self._pool().executemany(
            """INSERT INTO records (vector_id, collection, physical, modality, model, file_path,
                   run_id, trade_id, setup_id, "timestamp", document, metadata, thumbnail_b64,
                   user_label, quality_grade, archived_at, archived_embedding, created_at,
                   updated_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15,
                       $16, $17::real[], $18, $19)""",
            [
                (
                    r.vector_id,
                    r.collection,
                    r.physical,
                    r.modality,
                    r.model,
                    r.file_path,
                    r.run_id,
                    r.trade_id,
                    r.setup_id,
                    r.timestamp,
                    r.document,
                    json.dumps(r.metadata),
                    r.thumbnail_b64,
                    r.user_label,
                    r.quality_grade,
                    r.archived_at,
                    r.archived_embedding,
                    r.created_at,
                    r.updated_at,
                )
                for r in rows
            ],
        )

    async def import_labels(self, rows: Sequence[StoredLabel]) -> None:
        """Insert exported labels as they were."""
        await self._pool().executemany(
            """INSERT INTO labels (trade_id, labeler_id, label, quality_grade, occurred_at)
               VALUES ($1, $2, $3, $4, $5)""",
            [(r.trade_id, r.labeler_id, r.label, r.quality_grade, r.occurred_at) for r in rows],
        )

    async def count_rows(self) -> tuple[int, int]:
        """(records, labels) row counts."""
        row = await self._pool().fetchrow(
            "SELECT (SELECT count(*) FROM records) AS r, (SELECT count(*) FROM labels) AS l"
        )
        assert row is not None
        return int(row["r"]), int(row["l"])
