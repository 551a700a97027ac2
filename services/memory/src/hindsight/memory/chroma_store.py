"""Chroma: physical collections of vectors, embedded or behind a server.

Chroma's client is synchronous: every call runs in a worker thread, and writes are
serialised by one lock (the embedded client's SQLite does not like concurrent writers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.memory.config import MemorySettings
from hindsight.memory.domain.filters import Where
from hindsight.memory.domain.overfetch import MAX_CHUNK

__all__ = ["Metadata", "PhysicalCollection", "QueryHit", "VectorPage", "VectorStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Metadata = dict[str, str | int | float | bool]
"""A vector's metadata as Chroma stores it (no None values)."""


@dataclass(frozen=True, slots=True)
class PhysicalCollection:
    """One Chroma collection: a logical collection's vectors of one modality and model."""

    name: str
    collection: str
    modality: str
    model: str
    dimension: int | None = None


@dataclass(frozen=True, slots=True)
class VectorPage:
    """Vectors of one collection with their metadata and documents, in the same order."""

    ids: list[str]
    embeddings: list[list[float]]
    metadatas: list[Metadata | None]
    documents: list[str | None]


@dataclass(frozen=True, slots=True)
class QueryHit:
    """One nearest neighbour."""

    vector_id: str
    distance: float


def _make_client(settings: MemorySettings) -> ClientAPI:
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
        )
    path = settings.resolved_chroma_path()
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path))


class VectorStore:
    """The Chroma side of memory; every method is async and thread-offloaded."""

    def __init__(self, settings: MemorySettings) -> None:
        self.settings = settings
        self._client: ClientAPI | None = None
        self._collections: dict[str, Collection] = {}
        self._physical: dict[str, PhysicalCollection] = {}
        self.write_lock = asyncio.Lock()

    # --- life ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (or open the directory) and load the known collections."""
        self._client = await self._run(lambda: _make_client(self.settings))
        await self.refresh()

    async def stop(self) -> None:
        """Nothing to close: the client holds no connection between calls."""
        self._collections.clear()

    async def ping(self) -> None:
        """Readiness: Chroma answers a heartbeat."""
        await self._run(lambda: self._api().heartbeat())

    # --- helpers ---------------------------------------------------------------------

    def _api(self) -> ClientAPI:
        if self._client is None:
            raise UnavailableError("Chroma not connected")
        return self._client

    async def _run(self, call: Callable[[], T], *, field: str | None = None) -> T:
        """Run ``call`` in a thread; Chroma's ValueErrors become bad input on ``field``."""
        try:
            return await asyncio.to_thread(call)
        except InvalidInputError:
            raise
        except ValueError as exc:
            if field is None:
                raise
            raise InvalidInputError(f"rejected by Chroma: {exc}", field=field) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("chromadb"):
                raise UnavailableError(f"Chroma failed: {exc}") from exc
            raise

    async def refresh(self) -> list[PhysicalCollection]:
        """Reload the list of physical collections from Chroma."""

        def load() -> list[Collection]:
            return list(self._api().list_collections())

        found: dict[str, PhysicalCollection] = {}
        for col in await self._run(load):
            meta = col.metadata or {}
            if {"collection", "modality", "model"} <= set(meta):
                dim = meta.get("dimension")
                found[col.name] = PhysicalCollection(
                    col.name,
                    str(meta["collection"]),
                    str(meta["modality"]),
                    str(meta["model"]),
                    int(dim) if isinstance(dim, int | float) else None,
                )
        self._physical = found
        self._collections = {k: v for k, v in self._collections.items() if k in found}
        return list(found.values())

    def physical(self) -> list[PhysicalCollection]:
        """Known physical collections (as of the last refresh or write)."""
        return list(self._physical.values())

    def _collection(self, name: str) -> Collection:
        col = self._collections.get(name)
        if col is None:
            col = self._api().get_collection(name, embedding_function=None)
            self._collections[name] = col
        return col

    async def ensure(self, physical: PhysicalCollection) -> None:
        """Create the physical collection if missing (cosine space)."""
        known = self._physical.get(physical.name)
        if known is not None:
            if known.model != physical.model:
                raise InvalidInputError(
                    f"model {physical.model!r} maps to Chroma collection {physical.name!r} "
                    f"which already holds model {known.model!r}",
                    field="model",
                )
            if known.dimension is not None and known.dimension != physical.dimension:
                raise InvalidInputError(
                    f"{physical.dimension} dimensions, but {physical.name!r} holds "
                    f"{known.dimension}-d vectors of the same model",
                    field="embedding",
                )
            return

        def create() -> Collection:
            return self._api().get_or_create_collection(
                physical.name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={
                    "collection": physical.collection,
                    "modality": physical.modality,
                    "model": physical.model,
                    "dimension": physical.dimension or 0,
                },
            )

        self._collections[physical.name] = await self._run(create)
        self._physical[physical.name] = physical

    # --- writes (callers hold write_lock) ----------------------------------------------

    async def upsert(
        self,
        name: str,
        *,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        metadatas: Sequence[Metadata | None],
        documents: Sequence[str | None],
    ) -> None:
        """Insert or replace vectors (a None metadata: a vector restored without any)."""
        if not ids:
            return

        def call() -> None:
            # Chroma's upsert arguments, loosely typed: its stubs take no None metadata (a
            # vector restored from a backup may have none).
            kwargs: dict[str, Any] = {
                "ids": list(ids),
                "embeddings": [list(e) for e in embeddings],
                "metadatas": list(metadatas),
            }
            # Chroma wants all documents or none in one call.
            if all(d is not None for d in documents):
                kwargs["documents"] = list(documents)
            elif any(d is not None for d in documents):
                kwargs["documents"] = [d if d is not None else "" for d in documents]
            self._collection(name).upsert(**kwargs)

        await self._run(call, field="embedding")

    async def update_metadata(
        self, name: str, ids: Sequence[str], metadatas: Sequence[Mapping[str, str | None]]
    ) -> None:
        """Change metadata keys (a None value removes the key)."""
        if ids:
            await self._run(
                lambda: self._collection(name).update(ids=list(ids), metadatas=list(metadatas))
            )

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        """Remove vectors (missing ids are ignored)."""
        if ids and name in self._physical:
            await self._run(lambda: self._collection(name).delete(ids=list(ids)))

    async def drop_all(self) -> None:
        """Delete every physical collection (restore starts from nothing)."""
        names = [p.name for p in await self.refresh()]

        def call() -> None:
            for name in names:
                self._api().delete_collection(name)

        await self._run(call)
        self._collections.clear()
        self._physical.clear()

    # --- reads -----------------------------------------------------------------------

    async def query(
        self, name: str, embedding: Sequence[float], *, k: int, where: Where | None
    ) -> list[QueryHit]:
        """The k nearest vectors (cosine distance) that match ``where``, nearest first."""

        def call() -> list[QueryHit]:
            result = self._collection(name).query(
                query_embeddings=cast(Any, [list(embedding)]),
                n_results=k,
                where=where,
                include=["distances"],
            )
            ids = result["ids"][0] if result["ids"] else []
            distances = (result.get("distances") or [[]])[0] or []
            return [QueryHit(i, float(d)) for i, d in zip(ids, distances, strict=False)]

        return await self._run(call, field="filter")

    async def metadatas(self, name: str, ids: Sequence[str]) -> dict[str, Metadata]:
        """Metadata of those of ``ids`` that exist in the collection."""

        def call() -> dict[str, Metadata]:
            out: dict[str, Metadata] = {}
            # Chroma's get(ids=…) slows down sharply past a few hundred ids: chunk.
            for lo in range(0, len(ids), MAX_CHUNK):
                result = self._collection(name).get(
                    ids=list(ids[lo : lo + MAX_CHUNK]), include=["metadatas"]
                )
                metas: list[Any] = list(result.get("metadatas") or [])
                metas += [None] * (len(result["ids"]) - len(metas))
                for vid, meta in zip(result["ids"], metas, strict=True):
                    out[vid] = dict(meta or {})
            return out

        if not ids:
            return {}
        return await self._run(call)

    async def get(
        self,
        name: str,
        *,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> VectorPage:
        """Records with embeddings, metadatas and documents (for backup and archive)."""

        def call() -> VectorPage:
            result = self._collection(name).get(
                ids=list(ids) if ids is not None else None,
                limit=limit,
                offset=offset,
                include=["embeddings", "metadatas", "documents"],
            )
            embeddings = result.get("embeddings")
            metadatas: list[Any] = list(result.get("metadatas") or [])
            return VectorPage(
                ids=list(result["ids"]),
                embeddings=[list(map(float, e)) for e in embeddings]
                if embeddings is not None
                else [],
                metadatas=[dict(m) if m is not None else None for m in metadatas],
                documents=list(result.get("documents") or []),
            )

        return await self._run(call)

    async def count(self, name: str) -> int:
        """Vectors in one physical collection."""
        return await self._run(lambda: self._collection(name).count())
