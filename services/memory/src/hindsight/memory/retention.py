"""Retention: records older than N days are archived (restorable) or deleted.

Archive removes the vector from Chroma (so searches no longer see it) and keeps the
link-table row with its embedding, so ``restore`` can put it back. Raw files (PNGs,
JSON documents) are never touched: memory does not own them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hindsight.common.http import IsoDatetime
from hindsight.common.tasks import cancel_and_wait
from hindsight.memory.chroma_store import PhysicalCollection, VectorStore
from hindsight.memory.config import MemorySettings
from hindsight.memory.domain.records import chroma_metadata, epoch_seconds, now_utc
from hindsight.memory.ingest import Ingestor
from hindsight.memory.storage import Storage, StoredRecord

__all__ = ["ArchivedRestored", "Retention", "RetentionPass", "RetentionTask"]

logger = logging.getLogger(__name__)

_BATCH = 500


class RetentionPass(BaseModel):
    """What one retention pass did; ``archived`` or ``deleted`` by the mode (the other is
    left out: serialise with ``exclude_unset``)."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    mode: Literal["archive", "delete"]
    retention_days: float
    cutoff: IsoDatetime | None
    """Records stored before this were aged out; null when retention is off."""
    archived: int | None = None
    deleted: int | None = None

    @classmethod
    def of(
        cls,
        mode: Literal["archive", "delete"],
        *,
        retention_days: float,
        cutoff: datetime | None,
        records: int,
    ) -> RetentionPass:
        """The pass that aged out ``records`` in ``mode``."""
        if mode == "archive":
            return cls(mode=mode, retention_days=retention_days, cutoff=cutoff, archived=records)
        return cls(mode=mode, retention_days=retention_days, cutoff=cutoff, deleted=records)


class ArchivedRestored(BaseModel):
    """Answer of POST /v1/retention/restore."""

    model_config = ConfigDict(frozen=True)

    restored: int


def _group(rows: Sequence[StoredRecord]) -> dict[str, list[StoredRecord]]:
    out: dict[str, list[StoredRecord]] = {}
    for row in rows:
        out.setdefault(row.physical, []).append(row)
    return out


class Retention:
    """Applies the retention policy (and undoes an archive)."""

    def __init__(
        self, settings: MemorySettings, storage: Storage, vectors: VectorStore, ingestor: Ingestor
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.vectors = vectors
        self.ingestor = ingestor

    async def run(self, *, now: datetime | None = None) -> RetentionPass:
        """One pass: every active record older than ``retention_days``."""
        days = self.settings.retention_days
        mode = self.settings.retention_mode
        if days <= 0:
            return RetentionPass.of(mode, retention_days=days, cutoff=None, records=0)
        cutoff = (now or now_utc()) - timedelta(days=days)
        done = 0
        while True:
            async with self.vectors.write_lock:
                # Delete mode also purges what an earlier archive pass kept.
                rows = await self.storage.expired(
                    cutoff, limit=_BATCH, include_archived=mode == "delete"
                )
                if not rows:
                    break
                for physical, group in _group(rows).items():
                    ids = [r.vector_id for r in group]
                    if mode == "archive":
                        got = await self.vectors.get(physical, ids=ids)
                        items = list(zip(got.ids, got.embeddings, strict=True))
                        missing = set(ids) - set(got.ids)
                        await self.storage.mark_archived(items + [(vid, []) for vid in missing])
                        await self.vectors.delete(physical, ids)
                    else:
                        await self.vectors.delete(physical, ids)
                        await self.storage.delete_rows(ids)
                    done += len(ids)
        await self.ingestor.refresh_gauge()
        logger.info("retention pass", extra={"mode": mode, "records": done})
        return RetentionPass.of(mode, retention_days=days, cutoff=cutoff, records=done)

    async def restore(self, vector_ids: Sequence[str] | None) -> ArchivedRestored:
        """Put archived records back into Chroma (all, or the given ids)."""
        restored = 0
        async with self.vectors.write_lock:
            rows = await self.storage.archived(vector_ids)
            for physical, group in _group(rows).items():
                usable = [(r, r.archived_embedding) for r in group if r.archived_embedding]
                if not usable:
                    continue
                first, first_embedding = usable[0]
                await self.vectors.ensure(
                    PhysicalCollection(
                        physical,
                        first.collection,
                        first.modality,
                        first.model,
                        len(first_embedding),
                    )
                )
                await self.vectors.upsert(
                    physical,
                    ids=[r.vector_id for r, _ in usable],
                    embeddings=[list(embedding) for _, embedding in usable],
                    metadatas=[
                        chroma_metadata(r.metadata, ts=epoch_seconds(r.timestamp))
                        for r, _ in usable
                    ],
                    documents=[r.document for r, _ in usable],
                )
                await self.storage.mark_restored([r.vector_id for r, _ in usable])
                restored += len(usable)
        await self.ingestor.refresh_gauge()
        return ArchivedRestored(restored=restored)


class RetentionTask:
    """Runs :meth:`Retention.run` every ``retention_interval_s`` when retention is on."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.retention.settings.retention_days > 0:
            self._task = asyncio.create_task(self._loop(), name="memory-retention")

    async def _loop(self) -> None:
        while True:
            try:
                await self.retention.run()
            except Exception:
                logger.exception("retention pass failed; next try at the next interval")
            await asyncio.sleep(self.retention.settings.retention_interval_s)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
