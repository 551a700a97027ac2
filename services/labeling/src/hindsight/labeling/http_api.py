"""The JSON API: items, labels (single, bulk, undo), similar trades, images, exports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from hindsight.common.errors import InvalidInputError, NotFoundError, UnavailableError
from hindsight.common.events import format_utc
from hindsight.common.paths import resolve_in_roots
from hindsight.common.vectors import image_vector_id
from hindsight.labeling.auth import Auth, Principal
from hindsight.labeling.domain.export import to_csv, to_jsonl
from hindsight.labeling.domain.labels import is_disagreement, status_of
from hindsight.labeling.memory import MemoryClient
from hindsight.labeling.service import LabelService
from hindsight.labeling.storage import ItemFilter, Storage

__all__ = ["LabelCreate", "api_router", "item_public", "parse_filter"]

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
        limit: Annotated[int, Query(ge=1, le=2000)] = 500,
    ) -> dict[str, Any]:
        flt = parse_filter(
            symbol=symbol,
            run_id=run_id,
            status=status,
            disagreement=disagreement,
            date_from=date_from,
            date_to=date_to,
        )
        items = await storage.list_items(flt, limit=limit)
        return {"items": [item_public(i) for i in items], "counts": await storage.counts()}

    @router.get("/api/items/{trade_id}")
    async def get_item(trade_id: str, _: Principal = session) -> dict[str, Any]:
        item = await storage.get_item(trade_id)
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        return item_public(item)

    @router.get("/api/items/{trade_id}/similar")
    async def similar(trade_id: str, _: Principal = session) -> dict[str, Any]:
        item = await storage.get_item(trade_id)
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
            if await storage.get_item(trade_id) is None:
                raise NotFoundError(f"unknown trade {trade_id!r}")
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
    ) -> FileResponse:
        item = await storage.get_item(trade_id)
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        raw = item[f"{kind}_path"]
        if raw is None:
            raise NotFoundError(f"trade {trade_id} has no {kind} chart")
        try:
            path = resolve_in_roots(raw, image_roots, field="file_path", must_exist=True)
        except InvalidInputError as exc:  # gone, or outside the roots: never served
            raise NotFoundError(f"chart of {trade_id} is not available: {exc.reason}") from exc
        return FileResponse(
            path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    return router
