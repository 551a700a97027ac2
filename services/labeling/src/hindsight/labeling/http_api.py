"""The JSON API: items, labels (single, bulk, undo), similar trades, images, exports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from hindsight.common.errors import InvalidInputError, NotFoundError, UnavailableError
from hindsight.common.http import ErrorBody
from hindsight.labeling.auth import Auth, Principal
from hindsight.labeling.domain.export import to_csv, to_jsonl
from hindsight.labeling.domain.paging import PageCursor, decode_cursor
from hindsight.labeling.domain.pngcheck import PngLimits
from hindsight.labeling.images import iter_file, open_png
from hindsight.labeling.labelfiles import valid_trade_id
from hindsight.labeling.memory_client import MemoryClient
from hindsight.labeling.schemas import (
    MAX_PAGE_SIZE,
    BulkLabelCreate,
    BulkLabelsSaved,
    ItemList,
    ItemPublic,
    ItemQuery,
    LabelCreate,
    LabelPublic,
    LabelSavedPublic,
    QueueStats,
    SimilarTrades,
    UndoPublic,
)
from hindsight.labeling.service import LabelService
from hindsight.labeling.storage import ItemFilter, Storage

__all__ = [
    "MAX_PAGE_SIZE",
    "LabelCreate",
    "PageRequest",
    "api_router",
    "parse_filter",
    "parse_page",
]


class JsonLinesResponse(PlainTextResponse):
    """JSON Lines text, one object per line."""

    media_type = "application/x-ndjson"


class CsvResponse(PlainTextResponse):
    """CSV text with a header row."""

    media_type = "text/csv"


# OpenAPI response objects by status, as FastAPI's ``responses`` types them.
_Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    """An OpenAPI response of an error: its body is an ErrorBody."""
    return {"model": ErrorBody, "description": description}


_SESSION: _Responses = {401: _error("No valid session")}
_TRADE: _Responses = {**_SESSION, 404: _error("Unknown trade")}
_WRITE: _Responses = {**_TRADE, 403: _error("Missing or wrong X-CSRF-Token header")}


def _day(value: str | None, field: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInputError("expected a date (YYYY-MM-DD) or RFC 3339", field=field) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_filter(
    *,
    symbol: str | None,
    run_id: str | None,
    status: str | None,
    disagreement: str | None,
    date_from: str | None,
    date_to: str | None,
) -> ItemFilter:
    """Grid filters from query parameters (empty strings mean no filter)."""
    if status and status not in ("unlabeled", "labeled", "review"):
        raise InvalidInputError("one of unlabeled, labeled, review", field="status")
    end = _day(date_to, "date_to")
    if end is not None and date_to and len(date_to) == 10:
        end = end.replace(hour=23, minute=59, second=59, microsecond=999999)
    return ItemFilter(
        symbol=symbol or None,
        run_id=run_id or None,
        status=status or None,
        disagreement=disagreement in ("1", "true", "on", "yes"),
        date_from=_day(date_from, "date_from"),
        date_to=end,
    )


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which grid page: its size and at most one cursor."""

    size: int
    after: PageCursor | None = None
    before: PageCursor | None = None


def _cursor(token: str | None, field: str) -> PageCursor | None:
    if not token:
        return None
    try:
        return decode_cursor(token)
    except ValueError as exc:
        raise InvalidInputError("not a page cursor from this service", field=field) from exc


def parse_page(*, size: int, after: str | None, before: str | None) -> PageRequest:
    """The page asked for by query parameters (``after`` wins over ``before``)."""
    after_cursor = _cursor(after, "after")
    return PageRequest(
        size=size, after=after_cursor, before=None if after_cursor else _cursor(before, "before")
    )


def _known(trade_id: str) -> str:
    # An id no trade can have (too long, not file-name safe) is unknown: 404, no query.
    if not valid_trade_id(trade_id):
        raise NotFoundError("unknown trade (not a valid trade id)")
    return trade_id


def api_router(
    *,
    storage: Storage,
    labels: LabelService,
    auth: Auth,
    memory: MemoryClient,
    image_roots: list[Path],
    png_limits: PngLimits,
    default_page_size: int,
) -> APIRouter:
    """The ``/api`` and ``/images`` routes; every one needs a session, writes need CSRF."""
    router = APIRouter()
    # Not Annotated aliases: with postponed annotations FastAPI cannot see local names.
    session = Depends(auth.require)
    writer = Depends(auth.require_write)

    @router.get("/api/items", response_model=ItemList, responses=_SESSION)
    async def list_items(query: Annotated[ItemQuery, Query()], _: Principal = session) -> ItemList:
        flt = parse_filter(
            symbol=query.symbol,
            run_id=query.run_id,
            status=query.status,
            disagreement=query.disagreement,
            date_from=query.date_from,
            date_to=query.date_to,
        )
        want = parse_page(
            size=query.size or default_page_size, after=query.after, before=query.before
        )
        page = await storage.list_items(flt, size=want.size, after=want.after, before=want.before)
        return ItemList.of_page(page, size=want.size, counts=await storage.counts())

    @router.get("/api/items/{trade_id}", response_model=ItemPublic, responses=_TRADE)
    async def get_item(trade_id: str, _: Principal = session) -> ItemPublic:
        item = await storage.get_item(_known(trade_id))
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        return ItemPublic.of(item)

    @router.get(
        "/api/items/{trade_id}/similar",
        response_model=SimilarTrades,
        responses={**_TRADE, 503: _error("Memory is not available")},
    )
    async def similar(trade_id: str, _: Principal = session) -> SimilarTrades:
        item = await storage.get_item(_known(trade_id))
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        if not item.original_path:
            raise InvalidInputError("trade has no original chart to compare", field="trade_id")
        if not await memory.is_up():
            raise UnavailableError("memory is not available")
        found = await memory.similar_trades(item.original_path)
        return SimilarTrades(trade_id=trade_id, similar=[t for t in found if t != trade_id])

    # Writes return the queue counts and refresh the gauges from them: one aggregate per
    # request, however many labels a bulk saves.
    @router.post("/api/labels", response_model=LabelSavedPublic, responses=_WRITE)
    async def save_label(body: LabelCreate, who: Principal = writer) -> LabelSavedPublic:
        record = await labels.save(
            trade_id=body.trade_id,
            label=body.label,
            labeler_id=who.labeler_id,
            quality_grade=body.quality_grade,
            user_comment=body.user_comment,
        )
        return LabelSavedPublic(saved=LabelPublic.of(record), counts=await labels.refresh_metrics())

    @router.post("/api/labels/bulk", response_model=BulkLabelsSaved, responses=_WRITE)
    async def save_bulk(body: BulkLabelCreate, who: Principal = writer) -> BulkLabelsSaved:
        for trade_id in body.trade_ids:  # unknown trades refused before anything is written
            if not valid_trade_id(trade_id) or await storage.get_item(trade_id) is None:
                raise NotFoundError(f"unknown trade {trade_id[:200]!r}")
        saved = [
            await labels.save(
                trade_id=trade_id,
                label=body.label,
                labeler_id=who.labeler_id,
                quality_grade=body.quality_grade,
                user_comment=body.user_comment,
            )
            for trade_id in dict.fromkeys(body.trade_ids)
        ]
        return BulkLabelsSaved(
            saved=[LabelPublic.of(r) for r in saved], counts=await labels.refresh_metrics()
        )

    @router.post(
        "/api/undo",
        response_model=UndoPublic,
        responses={**_WRITE, 404: _error("Nothing to undo"), 409: _error("Relabeled since")},
    )
    async def undo(who: Principal = writer) -> UndoPublic:
        done = await labels.undo(labeler_id=who.labeler_id)
        return UndoPublic(
            undone=done.trade_id,
            restored=LabelPublic.of(done.restored),
            counts=await labels.refresh_metrics(),
        )

    @router.get("/api/stats", response_model=QueueStats, responses=_SESSION)
    async def stats(_: Principal = session) -> QueueStats:
        counts = await labels.refresh_metrics()
        rate = counts.agreed / counts.with_suggestion if counts.with_suggestion else None
        return QueueStats(counts=counts, agreement_rate=rate, memory_up=await memory.is_up())

    @router.get("/api/export.jsonl", response_class=JsonLinesResponse, responses=_SESSION)
    async def export_jsonl(_: Principal = session) -> JsonLinesResponse:
        """Every current label, as a file to save."""
        return JsonLinesResponse(
            to_jsonl(await storage.export_rows()),
            headers={"Content-Disposition": 'attachment; filename="labels.jsonl"'},
        )

    @router.get("/api/export.csv", response_class=CsvResponse, responses=_SESSION)
    async def export_csv(_: Principal = session) -> CsvResponse:
        """Every current label, as a file to save."""
        return CsvResponse(
            to_csv(await storage.export_rows()),
            headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
        )

    @router.get(
        "/images/{trade_id}/{kind}",
        response_class=StreamingResponse,
        responses={200: {"description": "The chart", "content": {"image/png": {}}}, **_TRADE},
    )
    async def image(
        trade_id: str, kind: Literal["original", "annotated"], _: Principal = session
    ) -> StreamingResponse:
        item = await storage.get_item(_known(trade_id))
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        raw = item.original_path if kind == "original" else item.annotated_path
        if raw is None:
            raise NotFoundError(f"trade {trade_id} has no {kind} chart")
        try:  # checked again: the file may have changed since png.created
            fh, size = await asyncio.to_thread(open_png, raw, image_roots, png_limits)
        except InvalidInputError as exc:  # gone, outside the roots, not a PNG: never served
            raise NotFoundError(f"chart of {trade_id} is not available: {exc.reason}") from exc
        return StreamingResponse(
            iter_file(fh, size),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    return router
