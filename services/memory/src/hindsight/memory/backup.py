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
from datetime import datetime
from pathlib import Path
from typing import Any

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.events import format_utc
from hindsight.memory.chroma_store import PhysicalCollection, VectorStore
from hindsight.memory.domain.records import now_utc
from hindsight.memory.ingest import Ingestor
from hindsight.memory.storage import Storage

__all__ = ["FORMAT", "BackupService"]

logger = logging.getLogger(__name__)

FORMAT = "hindsight-memory-backup/1"
_FILES = ("manifest.json", "records.jsonl", "labels.jsonl", "vectors.jsonl")
_DATETIMES = ("timestamp", "archived_at", "created_at", "updated_at", "occurred_at")
_PAGE = 1000


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":")) + "\n"


def _revive(row: dict[str, Any]) -> dict[str, Any]:
    for key in _DATETIMES:
        if isinstance(row.get(key), str):
            row[key] = datetime.fromisoformat(row[key])
    return row


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


class BackupService:
    """Writes and restores backups of the whole memory (all collections)."""

    def __init__(self, storage: Storage, vectors: VectorStore, ingestor: Ingestor) -> None:
        self.storage = storage
        self.vectors = vectors
        self.ingestor = ingestor

    async def backup(self, out: Path) -> dict[str, Any]:
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
        logger.info("backup written", extra={"counts": manifest["counts"]})
        return manifest

    async def _export(self, work: Path) -> dict[str, Any]:
        records = 0
        active: dict[str, int] = {}
        with (work / "records.jsonl").open("w", encoding="utf-8") as handle:
            async for row in self.storage.export_records():
                handle.write(_line(row))
                records += 1
                if row["archived_at"] is None:
                    active[row["physical"]] = active.get(row["physical"], 0) + 1
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
                        page["ids"],
                        page["embeddings"],
                        page["metadatas"] or [None] * len(page["ids"]),
                        page["documents"] or [None] * len(page["ids"]),
                        strict=True,
                    ):
                        handle.write(
                            _line(
                                {
                                    "physical": col.name,
                                    "id": vid,
                                    "embedding": emb,
                                    "metadata": meta,
                                    "document": doc,
                                }
                            )
                        )
                    vectors[col.name] = vectors.get(col.name, 0) + len(page["ids"])
                    if len(page["ids"]) < _PAGE:
                        break
                    offset += _PAGE
        mismatched = {
            name: {"link_table_active": active.get(name, 0), "chroma": vectors.get(name, 0)}
            for name in set(active) | set(vectors)
            if active.get(name, 0) != vectors.get(name, 0)
        }
        manifest = {
            "format": FORMAT,
            "created_at": format_utc(now_utc()),
            "counts": {"records": records, "labels": len(labels), "vectors": vectors},
            "collections": [
                {
                    "name": c.name,
                    "collection": c.collection,
                    "modality": c.modality,
                    "model": c.model,
                    "dimension": c.dimension,
                }
                for c in physical
            ],
            "mismatched": mismatched,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest

    async def restore(self, archive: Path) -> dict[str, Any]:
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
        logger.info("backup restored", extra={"counts": counts})
        return {"restored": counts, "manifest": manifest}

    @staticmethod
    def _unpack(archive: Path, work: Path) -> dict[str, Any]:
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
        manifest: dict[str, Any] = json.loads((work / "manifest.json").read_text("utf-8"))
        if manifest.get("format") != FORMAT:
            raise InvalidInputError(
                f"unknown backup format {manifest.get('format')!r}", field="backup"
            )
        counts = manifest["counts"]
        found_vectors: dict[str, int] = {}
        for item in _lines(work / "vectors.jsonl"):
            found_vectors[item["physical"]] = found_vectors.get(item["physical"], 0) + 1
        found = {
            "records": sum(1 for _ in _lines(work / "records.jsonl")),
            "labels": sum(1 for _ in _lines(work / "labels.jsonl")),
            "vectors": found_vectors,
        }
        expected = {**counts, "vectors": {k: v for k, v in counts["vectors"].items() if v}}
        if found != expected:
            raise InvalidInputError(
                f"backup files do not match the manifest: {found} != {expected}", field="backup"
            )
        return manifest

    async def _import(self, work: Path, manifest: dict[str, Any]) -> None:
        batch: list[dict[str, Any]] = []
        for row in _lines(work / "records.jsonl"):
            batch.append(_revive(row))
            if len(batch) >= _PAGE:
                await self.storage.import_records(batch)
                batch = []
        await self.storage.import_records(batch)
        await self.storage.import_labels([_revive(r) for r in _lines(work / "labels.jsonl")])
        for c in manifest["collections"]:
            await self.vectors.ensure(
                PhysicalCollection(
                    c["name"], c["collection"], c["modality"], c["model"], c.get("dimension")
                )
            )
        pending: dict[str, list[dict[str, Any]]] = {}

        async def flush(name: str) -> None:
            items = pending.pop(name, [])
            await self.vectors.upsert(
                name,
                ids=[i["id"] for i in items],
                embeddings=[i["embedding"] for i in items],
                metadatas=[i["metadata"] for i in items],
                documents=[i["document"] for i in items],
            )

        for item in _lines(work / "vectors.jsonl"):
            pending.setdefault(item["physical"], []).append(item)
            if len(pending[item["physical"]]) >= _PAGE:
                await flush(item["physical"])
        for name in list(pending):
            await flush(name)

    async def _verify(self, manifest: dict[str, Any]) -> dict[str, Any]:
        records, labels = await self.storage.count_rows()
        vectors = {c.name: await self.vectors.count(c.name) for c in await self.vectors.refresh()}
        counts = {"records": records, "labels": labels, "vectors": vectors}
        expected = manifest["counts"]
        if (records, labels) != (expected["records"], expected["labels"]) or {
            k: v for k, v in vectors.items() if v
        } != {k: v for k, v in expected["vectors"].items() if v}:
            raise UnavailableError(f"restore verification failed: {counts} != {expected}")
        return counts
