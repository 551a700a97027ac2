"""Writes: embeddings into Chroma + the link table, labels onto a trade's records."""

from __future__ import annotations

import logging
from collections.abc import Iterable

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
from hindsight.memory.storage import RecordRow, Storage, StoredRecord

__all__ = ["Ingestor"]

logger = logging.getLogger(__name__)


def _text(value: Scalar) -> str | None:
    return None if value is None else str(value)


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
        """Upsert one vector (link row first, then Chroma, under the write lock)."""
        async with self.vectors.write_lock:
            await self._store(event)

    async def _store(self, event: EmbeddingCreated) -> None:
        meta = dict(event.metadata)
        # Event time (the trade / bar / document time the embedder put there).
        when = parse_timestamp(meta.get("timestamp")) or event.occurred_at
        # Ingestion time: when memory first stored this record; a redelivery or re-embed
        # keeps it (and so does a label update, which patches only the label keys).
        ingested = await self.storage.created_at(event.vector_id) or now_utc()
        meta[INGESTED_KEY] = format_timestamp(ingested)
        trade_id = _text(meta.get("trade_id"))
        label = await self.storage.effective_label(trade_id) if trade_id else None
        if label is not None:
            meta["user_label"], meta["quality_grade"] = label
        physical = PhysicalCollection(
            physical_name(event.collection, event.modality, event.model),
            event.collection,
            event.modality,
            event.model,
            len(event.embedding),
        )
        await self.vectors.ensure(physical)
        full = full_metadata(meta)
        row = RecordRow(
            vector_id=event.vector_id,
            collection=event.collection,
            physical=physical.name,
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
        # Chroma first: if it fails the row is not written and the redelivery retries both.
        await self.vectors.upsert(
            physical.name,
            ids=[event.vector_id],
            embeddings=[event.embedding],
            metadatas=[chroma_metadata(full, ts=epoch_seconds(when))],
            documents=[event.document],
        )
        inserted, old_physical = await self.storage.upsert(row)
        if old_physical is not None and old_physical != physical.name:
            # Re-embedded with another model: the old vector must not answer searches.
            await self.vectors.delete(old_physical, [event.vector_id])
        UPSERTS.labels(event.collection).inc()
        if inserted:
            RECORDS.labels(event.collection).inc()

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
