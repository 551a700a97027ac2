"""What the labeling API reads and answers: request bodies and the public shapes.

An item shows its trade and the LLM suggestion as the ``json.created`` documents gave them
(schemaless JSON, see :data:`~hindsight.labeling.storage.JsonDocument`); file paths stay on
the server. Times are UTC, written with ``Z`` (:func:`hindsight.common.events.format_utc`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from hindsight.common.events import format_utc
from hindsight.common.record_ids import image_vector_id
from hindsight.labeling.domain.labels import (
    Label,
    LabelRecord,
    Status,
    in_review,
    is_disagreement,
    status_of,
)
from hindsight.labeling.domain.paging import encode_cursor
from hindsight.labeling.storage import ItemPage, JsonDocument, QueueCounts, QueueItem

__all__ = [
    "MAX_PAGE_SIZE",
    "BulkLabelCreate",
    "BulkLabelsSaved",
    "ItemList",
    "ItemPagePublic",
    "ItemPublic",
    "ItemQuery",
    "LabelCreate",
    "LabelPublic",
    "LabelSavedPublic",
    "LabelValue",
    "QueueStats",
    "SimilarTrades",
    "UndoPublic",
    "UtcTime",
]

MAX_PAGE_SIZE = 500

LabelValue = Label
QualityGrade = Literal["A", "B", "C", "D"]

UtcTime = Annotated[datetime, PlainSerializer(format_utc, return_type=str, when_used="json")]
"""A time written in JSON in UTC with ``Z`` (microseconds when non-zero), as the label files."""


class LabelCreate(BaseModel):
    """Body of ``POST /api/labels``; a ``labeler_id`` sent here is ignored (session wins)."""

    model_config = ConfigDict(extra="ignore")

    trade_id: str = Field(min_length=1, max_length=200)
    label: LabelValue
    quality_grade: QualityGrade | None = None
    user_comment: str | None = Field(default=None, max_length=4000)


class BulkLabelCreate(BaseModel):
    """Body of ``POST /api/labels/bulk``: one label for several trades."""

    model_config = ConfigDict(extra="ignore")

    trade_ids: list[str] = Field(min_length=1, max_length=500)
    label: LabelValue
    quality_grade: QualityGrade | None = None
    user_comment: str | None = Field(default=None, max_length=4000)


class ItemQuery(BaseModel):
    """Query of ``GET /api/items``: the grid's filters and which page (empty: no filter)."""

    symbol: str | None = None
    run_id: str | None = None
    status: str | None = None
    """``unlabeled``, ``labeled`` or ``review``."""
    disagreement: str | None = None
    """``1``, ``true``, ``on`` or ``yes``: only labels that disagree with the LLM."""
    date_from: str | None = None
    """A date (YYYY-MM-DD) or RFC 3339 time; trades opened from then on."""
    date_to: str | None = None
    """A date (that whole day included) or RFC 3339 time; trades opened before then."""
    size: int | None = Field(default=None, ge=1, le=MAX_PAGE_SIZE)
    """Items per page; default: the service's page size."""
    after: str | None = None
    """The ``next`` cursor of a page: the page after it."""
    before: str | None = None
    """The ``prev`` cursor of a page: the page before it (``after`` wins when both)."""


class _Public(BaseModel):
    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)


class ItemPublic(_Public):
    """A queue item as the page and the API show it (paths stay on the server)."""

    trade_id: str
    run_id: str | None
    symbol: str | None
    timeframe: str | None
    trade: JsonDocument
    """The trade_meta document (``{}`` before one arrived)."""
    trade_state: str | None
    suggestion: JsonDocument | None
    """The llm_suggestion document."""
    trade_time: UtcTime | None
    has_original: bool
    has_annotated: bool
    vector_id: str | None
    """Memory's vector id of the original chart."""
    label: Label | None
    quality_grade: str | None
    user_comment: str | None
    llm_agreed: bool | None
    labeler_id: str | None
    status: Status
    disagreement: bool
    in_review: bool

    @classmethod
    def of(cls, item: QueueItem) -> ItemPublic:
        """The public view of ``item``."""
        trade = item.trade or {}
        return cls(
            trade_id=item.trade_id,
            run_id=item.run_id,
            symbol=item.symbol or _text(trade.get("symbol")),
            timeframe=item.timeframe or _text(trade.get("timeframe")),
            trade=trade,
            trade_state=item.trade_state,
            suggestion=item.suggestion,
            trade_time=item.trade_time,
            has_original=item.original_path is not None,
            has_annotated=item.annotated_path is not None,
            vector_id=image_vector_id(item.original_path) if item.original_path else None,
            label=item.label,
            quality_grade=item.quality_grade,
            user_comment=item.user_comment,
            llm_agreed=item.llm_agreed,
            labeler_id=item.labeler_id,
            status=status_of(item.label),
            disagreement=is_disagreement(item.label, item.suggestion_label),
            in_review=in_review(item.label, item.suggestion_label),
        )


def _text(value: object) -> str | None:
    # The item's columns take only a text symbol / timeframe from trade_meta (storage).
    return value if isinstance(value, str) else None


class ItemPagePublic(_Public):
    """A page of items and where the others are (``next`` / ``prev``: opaque cursors)."""

    items: list[ItemPublic]
    total: int
    """Items matching the filters, on every page."""
    offset: int
    """Matching items before this page's first one."""
    next: str | None
    prev: str | None

    @classmethod
    def of(cls, page: ItemPage) -> ItemPagePublic:
        """The public view of ``page``."""
        return cls(
            items=[ItemPublic.of(i) for i in page.items],
            total=page.total,
            offset=page.offset,
            next=encode_cursor(page.next) if page.next else None,
            prev=encode_cursor(page.prev) if page.prev else None,
        )


class ItemList(ItemPagePublic):
    """Answer of ``GET /api/items``: a page, its size and the queue's counts."""

    size: int
    counts: QueueCounts

    @classmethod
    def of_page(cls, page: ItemPage, *, size: int, counts: QueueCounts) -> ItemList:
        """The answer for ``page``."""
        return cls.model_validate({**dict(ItemPagePublic.of(page)), "size": size, "counts": counts})


class SimilarTrades(_Public):
    """Answer of ``GET /api/items/{trade_id}/similar``: memory's most similar trades."""

    trade_id: str
    similar: list[str]
    """Trade ids, most similar first (the trade itself left out)."""


class LabelPublic(_Public):
    """A saved label, as its file ``labels/{trade_id}_label.json`` holds it."""

    trade_id: str
    screenshot: str | None
    label: Label
    quality_grade: str | None
    user_comment: str | None
    llm_agreed: bool | None
    labeler_id: str
    timestamp: UtcTime
    chroma_vector_id: str | None

    @classmethod
    def of(cls, record: LabelRecord) -> LabelPublic:
        """The public view of ``record`` (the same fields)."""
        return cls.model_validate(record, from_attributes=True)


class LabelSavedPublic(_Public):
    """Answer of ``POST /api/labels``: the label and the queue's counts after it."""

    saved: LabelPublic
    counts: QueueCounts


class BulkLabelsSaved(_Public):
    """Answer of ``POST /api/labels/bulk``: one label per trade (repeats saved once)."""

    saved: list[LabelPublic]
    counts: QueueCounts


class UndoPublic(_Public):
    """Answer of ``POST /api/undo``: the trade whose decision was undone, its label now."""

    undone: str
    restored: LabelPublic
    counts: QueueCounts


class QueueStats(_Public):
    """Answer of ``GET /api/stats``."""

    counts: QueueCounts
    agreement_rate: float | None
    """Labels agreeing with the LLM over labels of trades that had a suggestion."""
    memory_up: bool
