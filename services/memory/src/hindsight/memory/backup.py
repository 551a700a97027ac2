"""Backup and restore: the link table, the labels and every vector, in one tar.gz.

Both run inside the service (``POST /v1/backup`` / ``POST /v1/restore``) while holding
the write lock, so consumers wait and the archive is one consistent cut of Chroma and
PostgreSQL. Layout of the archive::

    manifest.json      format, created_at, counts, physical collections
    records.jsonl      one link-table row per line (archived ones with their vector)
    labels.jsonl       one stored label per line
    vectors.jsonl      {"physical", "id", "embedding", "metadata", "document"} per line
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.events import format_utc
from hindsight.memory.chroma_store import Metadata, PhysicalCollection, VectorStore
from hindsight.memory.domain.records import now_utc
from hindsight.memory.ingest import Ingestor
from hindsight.memory.storage import Storage, StoredLabel, StoredRecord

__all__ = [
    "FORMAT",
    "BackupCollection",
    "BackupCounts",
    "BackupManifest",
    "BackupRestored",
    "BackupService",
    "ChromaMismatch",
]

logger = logging.getLogger(__name__)

FORMAT = "hindsight-memory-backup/1"
_FILES = ("manifest.json", "records.jsonl", "labels.jsonl", "vectors.jsonl")
_DATETIMES = ("timestamp", "archived_at", "created_at", "updated_at", "occurred_at")
_PAGE = 1000

_JsonLine = dict[str, Any]  # one parsed .jsonl line: the caller makes a typed record of it


class _Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)


class BackupCounts(_Manifest):
    """Rows and vectors in a backup (or restored from one)."""

    records: int
    labels: int
    vectors: dict[str, int]
    """Vectors per physical collection."""


class BackupCollection(_Manifest):
    """A physical collection of the backup."""

    name: str
    collection: str
    modality: str
    model: str
    dimension: int | None = None


class ChromaMismatch(_Manifest):
    """A physical collection whose active link-table rows and Chroma vectors differ."""

    link_table_active: int
    chroma: int


class BackupManifest(_Manifest):
    """manifest.json of a backup."""

    format: str
    created_at: str
    """When the backup was written (RFC 3339, UTC), as the file has it."""
    counts: BackupCounts
    collections: list[BackupCollection]
    mismatched: dict[str, ChromaMismatch] = Field(default_factory=dict)


class BackupRestored(_Manifest):
    """Answer of POST /v1/restore: what was restored, and the backup's manifest."""

    restored: BackupCounts
    manifest: BackupManifest


@dataclass(frozen=True, slots=True)
class _VectorLine:
    """A line of vectors.jsonl."""

    physical: str
    id: str
    embedding: list[float]
    metadata: Metadata | None
    document: str | None


def _default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _line(item: StoredRecord | StoredLabel | _VectorLine) -> str:
    return json.dumps(asdict(item), default=_default, separators=(",", ":")) + "\n"


def _lines(path: Path) -> Iterator[_JsonLine]:
    """The objects of a .jsonl file, one per non-empty line."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _revived(path: Path) -> Iterator[_JsonLine]:
    """The objects of a records.jsonl or labels.jsonl, their times parsed."""
    for row in _lines(path):
        for key in _DATETIMES:
            if isinstance(row.get(key), str):
                row[key] = datetime.fromisoformat(row[key])
        yield row


class BackupService:
    """Writes and restores backups of the whole memory (all collections)."""

    def __init__(self, storage: Storage, vectors: VectorStore, ingestor: Ingestor) -> None:
        self.storage = storage
        self.vectors = vectors
        self.ingestor = ingestor

    async def backup(self, out: Path) -> BackupManifest:
        """Write a tar.gz to ``out``; returns the manifest."""
        work = Path(tempfile.mkdtemp(prefix="memory-backup-"))
        try:
            async with self.vectors.write_lock:
                manifest = await self._export(work)
            with tarfile.open(out, "w:gz") as tar:
                for name in _FILES:
                    tar.add(work / name, arcname=name)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        logger.info("backup written", extra={"counts": manifest.counts.model_dump()})
        return manifest

    async def _export(self, work: Path) -> BackupManifest:
        records = 0
        active: dict[str, int] = {}
        with (work / "records.jsonl").open("w", encoding="utf-8") as handle:
            async for row in self.storage.export_records():
                handle.write(_line(row))
                records += 1
                if row.archived_at is None:
                    active[row.physical] = active.get(row.physical, 0) + 1
        labels = await self.storage.export_labels()
        with (work / "labels.jsonl").open("w", encoding="utf-8") as handle:
            for label in labels:
                handle.write(_line(label))
        physical = await self.vectors.refresh()
        vectors: dict[str, int] = {}
        with (work / "vectors.jsonl").open("w", encoding="utf-8") as handle:
            for col in physical:
                offset = 0
                while True:
                    page = await self.vectors.get(col.name, limit=_PAGE, offset=offset)
                    for vid, emb, meta, doc in zip(
                        page.ids,
                        page.embeddings,
                        page.metadatas or [None] * len(page.ids),
                        page.documents or [None] * len(page.ids),
                        strict=True,
                    ):
                        handle.write(_line(_VectorLine(col.name, vid, emb, meta, doc)))
                    vectors[col.name] = vectors.get(col.name, 0) + len(page.ids)
                    if len(page.ids) < _PAGE:
                        break
                    offset += _PAGE
        mismatched = {
            name: ChromaMismatch(link_table_active=active.get(name, 0), chroma=vectors.get(name, 0))
            for name in set(active) | set(vectors)
            if active.get(name, 0) != vectors.get(name, 0)
        }
        manifest = BackupManifest(
            format=FORMAT,
            created_at=format_utc(now_utc()),
            counts=BackupCounts(records=records, labels=len(labels), vectors=vectors),
            collections=[
                BackupCollection(
                    name=c.name,
                    collection=c.collection,
                    modality=c.modality,
                    model=c.model,
                    dimension=c.dimension,
                )
                for c in physical
            ],
            mismatched=mismatched,
        )
        (work / "manifest.json").write_text(
            json.dumps(manifest.model_dump(), indent=2), encoding="utf-8"
        )
        return manifest

    async def restore(self, archive: Path) -> BackupRestored:
        """Replace everything with the backup's content; verify the counts."""
        work = Path(tempfile.mkdtemp(prefix="memory-restore-"))
        try:
            manifest = self._unpack(archive, work)
            async with self.vectors.write_lock:
                await self.storage.wipe()
                await self.vectors.drop_all()
                await self._import(work, manifest)
                counts = await self._verify(manifest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        await self.ingestor.refresh_gauge()
        logger.info("backup restored", extra={"counts": counts.model_dump()})
        return BackupRestored(restored=counts, manifest=manifest)

    @staticmethod
    def _unpack(archive: Path, work: Path) -> BackupManifest:
        """Extract the four known files only; check counts before anything is wiped."""
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = {m.name: m for m in tar.getmembers()}
                for name in _FILES:
                    member = members.get(name)
                    if member is None or not member.isfile():
                        raise InvalidInputError(f"backup lacks {name}", field="backup")
                    source = tar.extractfile(member)
                    assert source is not None
                    with (work / name).open("wb") as target:
                        shutil.copyfileobj(source, target)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise InvalidInputError(f"not a readable tar.gz: {exc}", field="backup") from exc
        raw = json.loads((work / "manifest.json").read_text("utf-8"))
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            given = raw.get("format") if isinstance(raw, dict) else None
            raise InvalidInputError(f"unknown backup format {given!r}", field="backup")
        try:
            manifest = BackupManifest.model_validate(raw)
        except ValidationError as exc:
            raise InvalidInputError(f"manifest.json: {exc}", field="backup") from exc
        counts = manifest.counts
        found_vectors: dict[str, int] = {}
        for item in _lines(work / "vectors.jsonl"):
            found_vectors[item["physical"]] = found_vectors.get(item["physical"], 0) + 1
        found = {
            "records": sum(1 for _ in _lines(work / "records.jsonl")),
            "labels": sum(1 for _ in _lines(work / "labels.jsonl")),
            "vectors": found_vectors,
        }
        expected = {
            **counts.model_dump(),
            "vectors": {k: v for k, v in counts.vectors.items() if v},
        }
        if found != expected:
            raise InvalidInputError(
                f"backup files do not match the manifest: {found} != {expected}", field="backup"
            )
        return manifest

    async def _import(self, work: Path, manifest: BackupManifest) -> None:
        batch: list[StoredRecord] = []
        for row in _revived(work / "records.jsonl"):
            batch.append(StoredRecord.of(row))
            if len(batch) >= _PAGE:
                await self.storage.import_records(batch)
                batch = []
        await self.storage.import_records(batch)
        await self.storage.import_labels(
            [StoredLabel.of(r) for r in _revived(work / "labels.jsonl")]
        )
        for c in manifest.collections:
            await self.vectors.ensure(
                PhysicalCollection(c.name, c.collection, c.modality, c.model, c.dimension)
            )
        pending: dict[str, list[_VectorLine]] = {}

        async def flush(name: str) -> None:
            items = pending.pop(name, [])
            await self.vectors.upsert(
                name,
                ids=[i.id for i in items],
                embeddings=[i.embedding for i in items],
                metadatas=[i.metadata for i in items],
                documents=[i.document for i in items],
            )

        for line in _lines(work / "vectors.jsonl"):
            item = _VectorLine(**line)
            pending.setdefault(item.physical, []).append(item)
            if len(pending[item.physical]) >= _PAGE:
                await flush(item.physical)
        for name in list(pending):
            await flush(name)

    async def _verify(self, manifest: BackupManifest) -> BackupCounts:
        records, labels = await self.storage.count_rows()
        vectors = {c.name: await self.vectors.count(c.name) for c in await self.vectors.refresh()}
        counts = BackupCounts(records=records, labels=labels, vectors=vectors)
        expected = manifest.counts
        if (records, labels) != (expected.records, expected.labels) or {
            k: v for k, v in vectors.items() if v
        } != {k: v for k, v in expected.vectors.items() if v}:
            raise UnavailableError(
                f"restore verification failed: {counts.model_dump()} != {expected.model_dump()}"
            )
        return counts
