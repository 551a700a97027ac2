"""Writes: embeddings into Chroma + the link table, labels onto a trade's records."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from hindsight.common.events import EmbeddingCreated, LabelSaved
from hindsight.memory.chroma_store import PhysicalCollection, VectorStore
from hindsight.memory.domain.records import (
    INGESTED_KEY,
    LOGICAL_COLLECTIONS,
    Scalar,
    chroma_metadata,
    epoch_seconds,
    format_timestamp,
    full_metadata,
    now_utc,
    parse_timestamp,
    physical_name,
)
from hindsight.memory.metrics import LABEL_UPDATES, RECORDS, UPSERTS
from hindsight.memory.storage import RecordMetadata, RecordRow, Storage, StoredRecord

__all__ = ["Ingestor"]

logger = logging.getLogger(__name__)


def _text(value: Scalar) -> str | None:
    return None if value is None else str(value)


def _record_row(
    event: EmbeddingCreated,
    physical: str,
    *,
    ingested: datetime,
    labels: Mapping[str, tuple[str, str | None]],
) -> RecordRow:
    """The link-table row of one event: its metadata completed with the ingestion time and
    the trade's current label."""
    meta = dict(event.metadata)
    # Event time (the trade / bar / document time the embedder put there).
    when = parse_timestamp(meta.get("timestamp")) or event.occurred_at
    meta[INGESTED_KEY] = format_timestamp(ingested)
    trade_id = _text(meta.get("trade_id"))
    label = labels.get(trade_id) if trade_id else None
    if label is not None:
        meta["user_label"], meta["quality_grade"] = label
    full = full_metadata(meta)
    return RecordRow(
        vector_id=event.vector_id,
        collection=event.collection,
        physical=physical,
        modality=event.modality,
        model=event.model,
        timestamp=when,
        metadata=full,
        file_path=_text(meta.get("file_path")),
        run_id=_text(meta.get("run_id")),
        trade_id=trade_id,
        setup_id=_text(meta.get("setup_id")),
        document=event.document,
        thumbnail_b64=event.thumbnail_b64,
        user_label=_text(meta.get("user_label")),
        quality_grade=_text(meta.get("quality_grade")),
        created_at=ingested,
    )


class Ingestor:
    """Applies ``embedding.created`` and ``label.saved``; every write is idempotent."""

    def __init__(self, storage: Storage, vectors: VectorStore) -> None:
        self.storage = storage
        self.vectors = vectors

    async def refresh_gauge(self) -> None:
        """Set the records gauge from the link table."""
        totals = dict.fromkeys(LOGICAL_COLLECTIONS, 0)
        for row in await self.storage.counts():
            totals[row.collection] = totals.get(row.collection, 0) + row.records
        for name, value in totals.items():
            RECORDS.labels(name).set(value)

    async def on_embedding(self, event: EmbeddingCreated) -> None:
        """Upsert one vector (see :meth:`on_embeddings`)."""
        await self.on_embeddings([event])

    async def on_embeddings(self, events: Sequence[EmbeddingCreated]) -> None:
        """Upsert a batch of vectors: one Chroma upsert per physical collection, then one
        link-table upsert, under the write lock.

        Chroma first: if it fails no row is written and the redelivery retries both; a
        crash after Chroma redelivers the batch, and both upserts are by vector_id, so
        nothing is lost or duplicated. Bad input (a model or dimension that does not fit
        its collection) raises before anything is written for the batch's collections.
        """
        # The last event of a vector_id wins, as one by one would leave it.
        latest = {event.vector_id: event for event in events}
        async with self.vectors.write_lock:
            await self._store(list(latest.values()))

    async def _store(self, events: list[EmbeddingCreated]) -> None:
        if not events:
            return
        ids = [event.vector_id for event in events]
        # Ingestion time: when memory first stored this record; a redelivery or re-embed
        # keeps it (and so does a label update, which patches only the label keys).
        created = await self.storage.created_at_many(ids)
        trade_ids = {t for e in events if (t := _text(e.metadata.get("trade_id")))}
        labels = await self.storage.effective_labels(trade_ids)
        now = now_utc()
        rows: list[RecordRow] = []
        by_physical: dict[str, list[tuple[EmbeddingCreated, RecordMetadata, float]]] = {}
        for event in events:
            physical = PhysicalCollection(
                physical_name(event.collection, event.modality, event.model),
                event.collection,
                event.modality,
                event.model,
                len(event.embedding),
            )
            await self.vectors.ensure(physical)
            row = _record_row(
                event, physical.name, ingested=created.get(event.vector_id, now), labels=labels
            )
            rows.append(row)
            by_physical.setdefault(physical.name, []).append(
                (event, row.metadata, epoch_seconds(row.timestamp))
            )
        for name, items in by_physical.items():
            await self.vectors.upsert(
                name,
                ids=[event.vector_id for event, _, _ in items],
                embeddings=[event.embedding for event, _, _ in items],
                metadatas=[chroma_metadata(full, ts=ts) for _, full, ts in items],
                documents=[event.document for event, _, _ in items],
            )
        stale: dict[str, list[str]] = {}
        for row, done in zip(rows, await self.storage.upsert_many(rows), strict=True):
            if done.old_physical is not None and done.old_physical != row.physical:
                # Re-embedded with another model: the old vector must not answer searches.
                stale.setdefault(done.old_physical, []).append(row.vector_id)
            UPSERTS.labels(row.collection).inc()
            if done.inserted:
                RECORDS.labels(row.collection).inc()
        for name, stale_ids in stale.items():
            await self.vectors.delete(name, stale_ids)

    async def on_label(self, event: LabelSaved) -> None:
        """Keep the label if newest per (trade, labeler); write it onto the trade's records."""
        async with self.vectors.write_lock:
            kept = await self.storage.save_label(
                trade_id=event.trade_id,
                labeler_id=event.labeler_id,
                label=event.label,
                quality_grade=event.quality_grade,
                occurred_at=event.occurred_at,
            )
            if not kept:
                logger.info(
                    "older label ignored",
                    extra={"trade_id": event.trade_id, "labeler_id": event.labeler_id},
                )
                return
            current = await self.storage.effective_label(event.trade_id)
            assert current is not None
            label, grade = current
            rows = await self.storage.apply_label(event.trade_id, label, grade)
            await self._label_vectors(rows, label, grade)
        LABEL_UPDATES.inc()

    async def _label_vectors(
        self, rows: Iterable[StoredRecord], label: str, grade: str | None
    ) -> None:
        by_physical: dict[str, list[str]] = {}
        for row in rows:
            by_physical.setdefault(row.physical, []).append(row.vector_id)
        for name, ids in by_physical.items():
            # A None grade removes the key from Chroma (a newer label without a grade).
            patch = {"user_label": label, "quality_grade": grade}
            await self.vectors.update_metadata(name, ids, [patch] * len(ids))

    async def remove(self, vector_ids: list[str]) -> int:
        """Delete records for good (Chroma and the link table)."""
        async with self.vectors.write_lock:
            rows = await self.storage.get_many(vector_ids)
            by_physical: dict[str, list[str]] = {}
            for row in rows.values():
                by_physical.setdefault(row.physical, []).append(row.vector_id)
            for name, ids in by_physical.items():
                await self.vectors.delete(name, ids)
            removed = await self.storage.delete_rows(list(rows))
        await self.refresh_gauge()
        return removed
