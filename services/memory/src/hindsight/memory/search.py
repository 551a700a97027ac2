"""POST /v1/search: vector, text, image or more-like-this; filters, as_of, hybrid (RRF)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.common.paths import resolve_in_roots
from hindsight.memory.chroma_store import PhysicalCollection, QueryHit, VectorStore
from hindsight.memory.config import MemorySettings
from hindsight.memory.domain.filters import Where, combine, validate_filter
from hindsight.memory.domain.fusion import reciprocal_rank_fusion
from hindsight.memory.domain.overfetch import FallbackMemory, OverfetchWalk, candidate_count
from hindsight.memory.domain.records import (
    INGESTED_TS_KEY,
    LOGICAL_COLLECTIONS,
    TS_KEY,
    epoch_seconds,
)
from hindsight.memory.domain.where import Predicate, where_predicate
from hindsight.memory.embed_client import QueryEmbedder, QueryVector, Tower
from hindsight.memory.metrics import SEARCH_PATHS, SEARCH_SECONDS
from hindsight.memory.schemas import SearchHit
from hindsight.memory.storage import Storage

__all__ = ["SearchRequest", "SearchResults", "Searcher", "parse_search_request", "search_where"]

logger = logging.getLogger(__name__)


class SearchRequest(BaseModel):
    """Body of POST /v1/search (contract in the common brief)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=8000)
    image_path: str | None = Field(default=None, min_length=1)
    vector: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None, min_length=1
    )
    model: str | None = Field(default=None, min_length=1)
    vector_id: str | None = Field(default=None, min_length=1)
    collections: list[str] = Field(default_factory=lambda: ["trade_cases"], min_length=1)
    filter: dict[str, Any] | None = None  # a Chroma where: free-form, checked by validate_filter
    k: int = Field(default=10, ge=1, le=200, strict=True)
    as_of: AwareDatetime | None = None
    """Point in time: only records whose event time (``timestamp``) is strictly earlier."""
    ingested_before: AwareDatetime | None = None
    """Only records memory stored (``ingested_at``) strictly earlier."""
    hybrid: bool = False


class SearchResults(BaseModel):
    """Body of the answer to POST /v1/search."""

    model_config = ConfigDict(frozen=True)

    results: list[SearchHit]
    took_ms: float


def parse_search_request(body: Any) -> tuple[SearchRequest, Where | None]:
    """Validate the body → (request, Chroma where); InvalidInputError names the field."""
    try:
        request = SearchRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidInputError(error["msg"], field=loc) from exc
    return request, search_where(request)


def search_where(request: SearchRequest) -> Where | None:
    """The checks across a request's fields, then its Chroma where (filter, as_of,
    ingested_before); InvalidInputError names the field."""
    given = [
        name
        for name in ("text", "image_path", "vector", "vector_id")
        if getattr(request, name) is not None
    ]
    if len(given) != 1:
        raise InvalidInputError(
            "give exactly one of text, image_path, vector, vector_id"
            + (f" (got {', '.join(given)})" if given else ""),
            field="query",
        )
    if request.vector is not None and request.model is None:
        raise InvalidInputError(
            "a vector search needs the model that made the vector", field="model"
        )
    unknown = [c for c in request.collections if c not in LOGICAL_COLLECTIONS]
    if unknown:
        raise InvalidInputError(
            f"unknown collection {unknown[0]!r} (known: {', '.join(LOGICAL_COLLECTIONS)})",
            field="collections",
        )
    if request.hybrid and request.text is None:
        raise InvalidInputError("hybrid search needs a text query", field="hybrid")
    where = validate_filter(request.filter)
    if request.as_of is not None:
        where = combine(where, {TS_KEY: {"$lt": epoch_seconds(request.as_of)}})
    if request.ingested_before is not None:
        # Records stored before ingested_at existed have no ingested_ts: never matched.
        where = combine(where, {INGESTED_TS_KEY: {"$lt": epoch_seconds(request.ingested_before)}})
    return where


class Searcher:
    """Answers searches from Chroma (vectors) and PostgreSQL (keywords, record details)."""

    def __init__(
        self,
        settings: MemorySettings,
        storage: Storage,
        vectors: VectorStore,
        embedder: QueryEmbedder,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.vectors = vectors
        self.embedder = embedder
        self.fallbacks = FallbackMemory()

    async def search(self, request: SearchRequest) -> SearchResults:
        """Run one search (the request's fields are valid; the rest is checked here)."""
        started = time.perf_counter()
        where = search_where(request)
        results = await self._search(request, where)
        elapsed = time.perf_counter() - started
        SEARCH_SECONDS.labels("hybrid" if request.hybrid else "vector").observe(elapsed)
        return SearchResults(results=results, took_ms=round(elapsed * 1000, 3))

    async def _targets(self, collections: Sequence[str]) -> list[PhysicalCollection]:
        found = [p for p in self.vectors.physical() if p.collection in collections]
        if not found:  # another replica may have created collections since
            found = [p for p in await self.vectors.refresh() if p.collection in collections]
        return sorted(found, key=lambda p: p.name)

    async def _query_vectors(
        self, request: SearchRequest, targets: list[PhysicalCollection]
    ) -> tuple[list[QueryVector], str | None]:
        """Query vectors for the request (+ a vector id to leave out of the results)."""
        if request.vector is not None:
            assert request.model is not None
            return [QueryVector(request.vector, request.model)], None
        if request.vector_id is not None:
            row = await self.storage.get(request.vector_id)
            if row is None or row.archived_at is not None:
                raise NotFoundError(f"no searchable record {request.vector_id!r}")
            got = await self.vectors.get(row.physical, ids=[request.vector_id])
            if not got.embeddings:
                raise NotFoundError(f"record {request.vector_id!r} has no vector in Chroma")
            return [QueryVector(got.embeddings[0], row.model)], request.vector_id
        if request.image_path is not None:
            path = resolve_in_roots(
                request.image_path, self.settings.image_roots, field="image_path"
            )
            return [await self.embedder.embed(tower="clip", image_path=str(path))], None
        assert request.text is not None
        towers: list[Tower] = []
        if any(p.modality == "image" for p in targets):
            towers.append("clip")
        if any(p.modality == "text" for p in targets):
            towers.append("text")
        if not towers:
            return [], None
        replies = await asyncio.gather(
            *(self.embedder.embed(tower=t, text=request.text) for t in towers),
            return_exceptions=True,
        )
        vectors = [r for r in replies if isinstance(r, QueryVector)]
        errors = [r for r in replies if isinstance(r, BaseException)]
        if not vectors:
            raise errors[0]
        for error in errors:
            logger.warning("one query tower failed, searching with the others: %s", error)
        return vectors, None

    async def _search(self, request: SearchRequest, where: Where | None) -> list[SearchHit]:
        targets = await self._targets(request.collections)
        query_vectors, exclude = await self._query_vectors(request, targets)
        k = request.k
        predicate = where_predicate(where)
        where_key = json.dumps(where, sort_keys=True)  # the fallback memory's key, once
        jobs = []
        for qv in query_vectors:
            for physical in targets:
                if physical.model != qv.model:
                    continue
                if physical.dimension and physical.dimension != len(qv.embedding):
                    raise InvalidInputError(
                        f"{len(qv.embedding)} dimensions, model {qv.model!r} has "
                        f"{physical.dimension}",
                        field="vector",
                    )
                jobs.append(
                    self._nearest(
                        physical.name,
                        qv.embedding,
                        need=k + (1 if exclude else 0),
                        where=where,
                        where_key=where_key,
                        predicate=predicate,
                    )
                )
        hit_lists: list[list[QueryHit]] = list(await asyncio.gather(*jobs))
        # Lists of one model share a vector space: merge them by distance. Different
        # models (CLIP images, MiniLM texts) and keywords are only comparable by rank.
        per_model: dict[str, list[QueryHit]] = {}
        index = 0
        for qv in query_vectors:
            for physical in targets:
                if physical.model == qv.model:
                    per_model.setdefault(qv.model, []).extend(hit_lists[index])
                    index += 1
        distance: dict[str, float] = {}
        rankings: list[list[str]] = []
        for model in sorted(per_model):
            hits = sorted(per_model[model], key=lambda h: (h.distance, h.vector_id))
            ranking = []
            for hit in hits:
                if hit.vector_id == exclude or hit.vector_id in distance:
                    continue
                ranking.append(hit.vector_id)
                distance[hit.vector_id] = hit.distance
            rankings.append(ranking[:k])
        if request.hybrid:
            assert request.text is not None
            rankings.append(await self._keyword(request, where, predicate))
        rankings = [r for r in rankings if r]
        if len(rankings) == 1 and all(vid in distance for vid in rankings[0]):
            # One ranked list: the score is the cosine similarity itself.
            scored = [(vid, 1.0 - distance[vid]) for vid in rankings[0]]
        else:
            scored = reciprocal_rank_fusion(rankings)
        scored = scored[:k]
        rows = await self.storage.get_many([vid for vid, _ in scored])
        results = []
        for vid, score in scored:
            row = rows.get(vid)
            if row is None:
                continue
            results.append(
                SearchHit.of(
                    row,
                    score=round(score, 6),
                    distance=None if vid not in distance else round(distance[vid], 6),
                )
            )
        return results

    async def _nearest(
        self,
        name: str,
        embedding: Sequence[float],
        *,
        need: int,
        where: Where | None,
        where_key: str,
        predicate: Predicate,
    ) -> list[QueryHit]:
        """The ``need`` nearest records of one physical collection that match ``where``.

        Chroma's filtered query is slow on a large collection, so a filtered search first
        asks for more neighbours unfiltered and filters them here (``domain.overfetch``
        says when that is exactly the filtered answer); Chroma filters only otherwise.
        """
        if where is None:
            SEARCH_PATHS.labels("unfiltered").inc()
            return await self.vectors.query(name, embedding, k=need, where=None)
        asked = candidate_count(
            need, factor=self.settings.search_overfetch, cap=self.settings.search_overfetch_max
        )
        key = f"{name} {where_key}"
        if asked and self.fallbacks.should_try(key):
            candidates = await self.vectors.query(name, embedding, k=asked, where=None)
            walk = OverfetchWalk(need=need, asked=asked, found=len(candidates))
            while (chunk := walk.next_chunk()) is not None:
                ids = [candidates[i].vector_id for i in chunk]
                metas = await self.vectors.metadatas(name, ids)
                # An id missing here was deleted since the query: it matches nothing.
                walk.feed(chunk, [vid in metas and predicate(metas[vid]) for vid in ids])
            self.fallbacks.record(key, selective=walk.selective)
            if walk.done:
                SEARCH_PATHS.labels("overfetch").inc()
                return [candidates[i] for i in walk.chosen]
        SEARCH_PATHS.labels("chroma_filter").inc()
        return await self.vectors.query(name, embedding, k=need, where=where)

    async def _keyword(
        self, request: SearchRequest, where: Where | None, predicate: Predicate
    ) -> list[str]:
        """Full-text hits (PostgreSQL), filtered by the same ``where`` on Chroma's metadata."""
        assert request.text is not None
        before: datetime | None = request.as_of
        hits = await self.storage.keyword_search(
            request.text,
            collections=request.collections,
            before=before,
            ingested_before=request.ingested_before,
            limit=self.settings.keyword_candidates,
        )
        if where is not None and hits:
            by_physical: dict[str, list[str]] = {}
            for vid, physical in hits:
                by_physical.setdefault(physical, []).append(vid)
            known = {p.name for p in self.vectors.physical()}
            allowed: set[str] = set()
            for physical, ids in by_physical.items():
                if physical in known:
                    # By id, then filtered here: cheaper than Chroma's where at scale.
                    metas = await self.vectors.metadatas(physical, ids)
                    allowed |= {vid for vid, meta in metas.items() if predicate(meta)}
            hits = [(vid, p) for vid, p in hits if vid in allowed]
        return [vid for vid, _ in hits[: request.k]]
