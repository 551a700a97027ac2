"""HTTP routes of the Similarity-API on memory's API: ``POST /v1/patterns/nearest`` and
``PUT /v1/patterns/embeds`` (a write: bearer-authenticated like memory's other writes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from fastapi.params import Depends
from pydantic import AwareDatetime, BaseModel, Field, FiniteFloat

from hindsight.common.errors import InvalidInputError
from hindsight.memory.similarity.query import DEFAULT_P, SimilarityQuery
from hindsight.memory.similarity.records import (
    EMBED_DIM,
    MAX_K,
    NearestResult,
    PatternEmbed,
)
from hindsight.memory.similarity.store import PatternStore

__all__ = [
    "EmbedsUpserted",
    "NearestAnswer",
    "NearestRequest",
    "NeighbourPublic",
    "PatternEmbedIn",
    "PatternEmbedsPut",
    "patterns_router",
]

MAX_EMBEDS_PER_PUT = 10_000


class NearestRequest(BaseModel):
    """Body of POST /v1/patterns/nearest: an embedding, or symbol + timeframe + end."""

    embed: list[FiniteFloat] | None = Field(
        default=None, min_length=EMBED_DIM, max_length=EMBED_DIM
    )
    k: int = Field(default=20, ge=1, le=MAX_K)
    as_of: AwareDatetime
    """Only neighbours that ended and whose outcome was known at or before this time."""
    symbol: str | None = None
    timeframe: str | None = None
    pattern: str | None = None
    end: AwareDatetime | None = None
    """Without ``embed``: the stored window of symbol + timeframe ending here (default as_of)."""
    p: float = Field(default=DEFAULT_P, ge=0.0, le=1.0)


class NeighbourPublic(BaseModel):
    """One neighbour on the wire."""

    signal_id: str
    similarity: float
    pattern: str
    quality: float
    realised_r: float | None
    ts: datetime
    symbol: str
    timeframe: str


class NearestAnswer(BaseModel):
    """Neighbours, most similar first, with sim_conf and hist_rr_pct (null without any)."""

    neighbours: list[NeighbourPublic]
    sim_conf: float | None
    hist_rr_pct: float | None
    exact: bool

    @classmethod
    def of(cls, result: NearestResult) -> NearestAnswer:
        return cls(
            neighbours=[
                NeighbourPublic(
                    signal_id=n.signal_id,
                    similarity=n.similarity,
                    pattern=n.pattern,
                    quality=n.quality,
                    realised_r=n.realised_r,
                    ts=n.ts,
                    symbol=n.symbol,
                    timeframe=n.timeframe,
                )
                for n in result.neighbours
            ],
            sim_conf=result.sim_conf,
            hist_rr_pct=result.hist_rr_pct,
            exact=result.exact,
        )


class PatternEmbedIn(BaseModel):
    """One window's Pattern-CNN output."""

    signal_id: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    timeframe: str = Field(min_length=1)
    ts: AwareDatetime
    embed: list[FiniteFloat] = Field(min_length=EMBED_DIM, max_length=EMBED_DIM)
    pattern: str = Field(min_length=1)
    quality: FiniteFloat
    pole_katr: FiniteFloat
    model_version: str = Field(min_length=1)


class PatternEmbedsPut(BaseModel):
    """Body of PUT /v1/patterns/embeds: insert or replace by signal_id (idempotent)."""

    embeds: list[PatternEmbedIn] = Field(min_length=1, max_length=MAX_EMBEDS_PER_PUT)


class EmbedsUpserted(BaseModel):
    """What PUT /v1/patterns/embeds did."""

    inserted: int
    updated: int
    unchanged: int


def patterns_router(
    store: PatternStore, query: SimilarityQuery, *, admin: Sequence[Depends]
) -> APIRouter:
    """The two routes, mounted by memory's app under /v1."""
    router = APIRouter(prefix="/patterns")

    @router.post("/nearest", response_model=NearestAnswer)
    async def nearest(body: NearestRequest) -> NearestAnswer:
        result = await query.nearest(
            body.embed,
            body.k,
            as_of=body.as_of,
            symbol=body.symbol,
            timeframe=body.timeframe,
            pattern=body.pattern,
            end=body.end,
            p=body.p,
        )
        return NearestAnswer.of(result)

    @router.put("/embeds", dependencies=list(admin), response_model=EmbedsUpserted)
    async def put_embeds(body: PatternEmbedsPut) -> EmbedsUpserted:
        rows = [_row(i, e) for i, e in enumerate(body.embeds)]
        counts = await store.upsert_many(rows)
        return EmbedsUpserted(
            inserted=counts.inserted, updated=counts.updated, unchanged=counts.unchanged
        )

    return router


def _row(index: int, item: PatternEmbedIn) -> PatternEmbed:
    """The record of the ``index``-th item; what the schema cannot see (a zero vector, a
    blank name) is answered naming ``embeds.<index>.<field>``."""
    values: dict[str, Any] = item.model_dump()
    values["embed"] = tuple(item.embed)
    try:
        return PatternEmbed(**values)
    except InvalidInputError as exc:
        field = f"embeds.{index}.{exc.field}"
        raise InvalidInputError(exc.reason, field=field) from exc
