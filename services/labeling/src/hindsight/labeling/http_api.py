"""The JSON API: items, labels (single, bulk, undo), similar trades, images, exports."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from hindsight.common.errors import InvalidInputError, NotFoundError, UnavailableError
from hindsight.common.events import format_utc
from hindsight.common.record_ids import image_vector_id
from hindsight.labeling.auth import Auth, Principal
from hindsight.labeling.domain.export import to_csv, to_jsonl
from hindsight.labeling.domain.labels import in_review, is_disagreement, status_of
from hindsight.labeling.domain.paging import PageCursor, decode_cursor, encode_cursor
from hindsight.labeling.domain.pngcheck import PngLimits
from hindsight.labeling.images import iter_file, open_png
from hindsight.labeling.labelfiles import valid_trade_id
from hindsight.labeling.memory_client import MemoryClient
from hindsight.labeling.service import LabelService
from hindsight.labeling.storage import ItemFilter, ItemPage, Storage

__all__ = [
    "MAX_PAGE_SIZE",
    "LabelCreate",
    "PageRequest",
    "api_router",
    "item_public",
    "page_public",
    "parse_filter",
    "parse_page",
]

MAX_PAGE_SIZE = 500

LabelValue = Literal["approved", "rejected", "review"]


class LabelCreate(BaseModel):
    """Body of ``POST /api/labels``; a ``labeler_id`` sent here is ignored (session wins)."""

    model_config = ConfigDict(extra="ignore")

    trade_id: str = Field(min_length=1, max_length=200)
    label: LabelValue
    quality_grade: Literal["A", "B", "C", "D"] | None = None
    user_comment: str | None = Field(default=None, max_length=4000)


class BulkLabelCreate(BaseModel):
    """Body of ``POST /api/labels/bulk``: one label for several trades."""

    model_config = ConfigDict(extra="ignore")

    trade_ids: list[str] = Field(min_length=1, max_length=500)
    label: LabelValue
    quality_grade: Literal["A", "B", "C", "D"] | None = None
    user_comment: str | None = Field(default=None, max_length=4000)


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


def page_public(page: ItemPage) -> dict[str, Any]:
    """The page's items and where the others are (``next`` / ``prev``: opaque cursors)."""
    return {
        "items": [item_public(i) for i in page.items],
        "total": page.total,
        "offset": page.offset,
        "next": encode_cursor(page.next) if page.next else None,
        "prev": encode_cursor(page.prev) if page.prev else None,
    }


def _known(trade_id: str) -> str:
    # An id no trade can have (too long, not file-name safe) is unknown: 404, no query.
    if not valid_trade_id(trade_id):
        raise NotFoundError("unknown trade (not a valid trade id)")
    return trade_id


def item_public(item: dict[str, Any]) -> dict[str, Any]:
    """What the page and the API show of an item (paths stay on the server)."""
    trade = item.get("trade") or {}
    return {
        "trade_id": item["trade_id"],
        "run_id": item["run_id"],
        "symbol": item["symbol"] or trade.get("symbol"),
        "timeframe": item["timeframe"] or trade.get("timeframe"),
        "trade": trade,
        "trade_state": item["trade_state"],
        "suggestion": item["suggestion"],
        "trade_time": format_utc(item["trade_time"]) if item["trade_time"] else None,
        "has_original": item["original_path"] is not None,
        "has_annotated": item["annotated_path"] is not None,
        "vector_id": image_vector_id(item["original_path"]) if item["original_path"] else None,
        "label": item["label"],
        "quality_grade": item["quality_grade"],
        "user_comment": item["user_comment"],
        "llm_agreed": item["llm_agreed"],
        "labeler_id": item["labeler_id"],
        "status": status_of(item["label"]),
        "disagreement": is_disagreement(item["label"], item["suggestion_label"]),
        "in_review": in_review(item["label"], item["suggestion_label"]),
    }


def _export_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["timestamp"] = format_utc(out.pop("occurred_at"))
    return out


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

    @router.get("/api/items")
    async def list_items(
        _: Principal = session,
        symbol: str | None = None,
        run_id: str | None = None,
        status: str | None = None,
        disagreement: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        size: Annotated[int | None, Query(ge=1, le=MAX_PAGE_SIZE)] = None,
        after: str | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        flt = parse_filter(
            symbol=symbol,
            run_id=run_id,
            status=status,
            disagreement=disagreement,
            date_from=date_from,
            date_to=date_to,
        )
        want = parse_page(size=size or default_page_size, after=after, before=before)
        page = await storage.list_items(flt, size=want.size, after=want.after, before=want.before)
        return {**page_public(page), "size": want.size, "counts": await storage.counts()}

    @router.get("/api/items/{trade_id}")
    async def get_item(trade_id: str, _: Principal = session) -> dict[str, Any]:
        item = await storage.get_item(_known(trade_id))
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        return item_public(item)

    @router.get("/api/items/{trade_id}/similar")
    async def similar(trade_id: str, _: Principal = session) -> dict[str, Any]:
        item = await storage.get_item(_known(trade_id))
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        if not item["original_path"]:
            raise InvalidInputError("trade has no original chart to compare", field="trade_id")
        if not await memory.is_up():
            raise UnavailableError("memory is not available")
        found = await memory.similar_trades(item["original_path"])
        return {"trade_id": trade_id, "similar": [t for t in found if t != trade_id]}

    # Writes return the queue counts and refresh the gauges from them: one aggregate per
    # request, however many labels a bulk saves.
    @router.post("/api/labels")
    async def save_label(body: LabelCreate, who: Principal = writer) -> dict[str, Any]:
        record = await labels.save(
            trade_id=body.trade_id,
            label=body.label,
            labeler_id=who.labeler_id,
            quality_grade=body.quality_grade,
            user_comment=body.user_comment,
        )
        return {"saved": record, "counts": await labels.refresh_metrics()}

    @router.post("/api/labels/bulk")
    async def save_bulk(body: BulkLabelCreate, who: Principal = writer) -> dict[str, Any]:
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
        return {"saved": saved, "counts": await labels.refresh_metrics()}

    @router.post("/api/undo")
    async def undo(who: Principal = writer) -> dict[str, Any]:
        result = await labels.undo(labeler_id=who.labeler_id)
        return {**result, "counts": await labels.refresh_metrics()}

    @router.get("/api/stats")
    async def stats(_: Principal = session) -> dict[str, Any]:
        counts = await labels.refresh_metrics()
        rate = counts["agreed"] / counts["with_suggestion"] if counts["with_suggestion"] else None
        return {"counts": counts, "agreement_rate": rate, "memory_up": await memory.is_up()}

    @router.get("/api/export.jsonl")
    async def export_jsonl(_: Principal = session) -> PlainTextResponse:
        rows = [_export_row(r) for r in await storage.export_rows()]
        return PlainTextResponse(
            to_jsonl(rows),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="labels.jsonl"'},
        )

    @router.get("/api/export.csv")
    async def export_csv(_: Principal = session) -> PlainTextResponse:
        rows = [_export_row(r) for r in await storage.export_rows()]
        return PlainTextResponse(
            to_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="labels.csv"'},
        )

    @router.get("/images/{trade_id}/{kind}")
    async def image(
        trade_id: str, kind: Literal["original", "annotated"], _: Principal = session
    ) -> StreamingResponse:
        item = await storage.get_item(_known(trade_id))
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        raw = item[f"{kind}_path"]
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
