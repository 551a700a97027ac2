"""The labeling service's PostgreSQL repository (schema ``labeling``).

Reads come back as frozen records (:class:`QueueItem`, :class:`LabelRecord`,
:class:`UndoEntry`, :class:`QueueCounts`, ...), never as asyncpg rows or dicts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from hindsight.common.events import LabelSaved
from hindsight.common.outbox import OutboxTable
from hindsight.labeling.domain.export import ExportRow
from hindsight.labeling.domain.labels import LabelRecord
from hindsight.labeling.domain.paging import PageCursor

__all__ = [
    "MIGRATIONS",
    "OUTBOX",
    "Facets",
    "ItemFilter",
    "ItemPage",
    "JsonDocument",
    "QueueCounts",
    "QueueItem",
    "Storage",
    "StoredSession",
    "UndoEntry",
]

MIGRATIONS = Path(__file__).parent / "migrations"
OUTBOX = OutboxTable(body_column="body", keep_sent=False)
"""``label.saved`` events; a published row is deleted."""

JsonDocument = dict[str, Any]
"""A ``json.created`` payload kept as it came (trade_meta, llm_suggestion): other services
write these documents with keys of their own, so here they are schemaless JSON."""

_LABEL_COLUMNS = (
    "trade_id, label, quality_grade, user_comment, llm_agreed, labeler_id, occurred_at, "
    "screenshot, chroma_vector_id"
)
_ITEM_SELECT = """
    SELECT i.trade_id, i.run_id, i.symbol, i.timeframe, i.setup_id, i.original_path,
           i.annotated_path, i.trade::text AS trade, i.trade_state,
           i.suggestion::text AS suggestion,
           i.suggestion_label, i.trade_time, l.label, l.quality_grade, l.user_comment,
           l.llm_agreed, l.labeler_id, l.occurred_at AS labeled_at
    FROM items i LEFT JOIN labels l ON l.trade_id = i.trade_id
"""
# The review queue: labelled "review", or a label that disagrees with the LLM suggestion.
_IN_REVIEW = "(l.label = 'review' OR l.label <> i.suggestion_label)"
_ORDER = "i.trade_time NULLS LAST, i.trade_id"
_ORDER_REVERSED = "i.trade_time DESC NULLS FIRST, i.trade_id DESC"


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFilter:
    """Grid filters; ``None`` means no filter."""

    symbol: str | None = None
    run_id: str | None = None
    status: str | None = None
    disagreement: bool = False
    date_from: datetime | None = None
    date_to: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueItem:
    """A queue item (one trade) with its current label, if any."""

    trade_id: str
    run_id: str | None
    symbol: str | None
    timeframe: str | None
    setup_id: str | None
    original_path: str | None  # file paths as png.created gave them; never shown
    annotated_path: str | None
    trade: JsonDocument | None  # the trade_meta payload (closed supersedes open)
    trade_state: str | None  # open | closed
    suggestion: JsonDocument | None  # the llm_suggestion payload
    suggestion_label: str | None
    trade_time: datetime | None
    label: str | None
    quality_grade: str | None
    user_comment: str | None
    llm_agreed: bool | None
    labeler_id: str | None
    labeled_at: datetime | None

    @property
    def cursor(self) -> PageCursor:
        """This item's place in the grid's order."""
        return PageCursor(self.trade_time, self.trade_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemPage:
    """One page of the grid: its items, how many match in all, and where the others are."""

    items: list[QueueItem]
    total: int
    offset: int  # matching items before the first one of this page
    next: PageCursor | None  # ``after`` of the next page
    prev: PageCursor | None  # ``before`` of the previous page


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueCounts:
    """Items per queue status, plus the total and the label / suggestion agreement."""

    total: int
    unlabeled: int
    labeled: int
    review: int
    disagreements: int
    with_suggestion: int  # labels of trades that had a suggestion
    agreed: int  # ... and agreed with it


@dataclass(frozen=True, slots=True, kw_only=True)
class Facets:
    """Known symbols and run ids, for the filter drop-downs."""

    symbols: list[str]
    run_ids: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class UndoEntry:
    """A label decision on the undo stack: the label it replaced (``None``: unlabeled)."""

    id: int
    trade_id: str
    label: str
    occurred_at: datetime
    previous: LabelRecord | None


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A live session's labeler and CSRF token."""

    labeler_id: str
    csrf_token: str


def _json_document(text: str | None) -> JsonDocument | None:
    if text is None:
        return None
    value: JsonDocument = json.loads(text)
    return value


def _item(row: asyncpg.Record) -> QueueItem:
    """A row of ``_ITEM_SELECT`` (its columns are the record's fields)."""
    values = dict(row)
    values["trade"] = _json_document(values["trade"])
    values["suggestion"] = _json_document(values["suggestion"])
    return QueueItem(**values)


def _label(row: asyncpg.Record) -> LabelRecord:
    """A ``labels`` row (selected as ``_LABEL_COLUMNS``)."""
    return LabelRecord(
        trade_id=row["trade_id"],
        label=row["label"],
        labeler_id=row["labeler_id"],
        timestamp=row["occurred_at"],
        quality_grade=row["quality_grade"],
        user_comment=row["user_comment"],
        llm_agreed=row["llm_agreed"],
        screenshot=row["screenshot"],
        chroma_vector_id=row["chroma_vector_id"],
    )


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _filter_sql(flt: ItemFilter, arg: Callable[[Any], str]) -> list[str]:
    where: list[str] = []
    if flt.symbol:
        where.append(f"i.symbol = {arg(flt.symbol)}")
    if flt.run_id:
        where.append(f"i.run_id = {arg(flt.run_id)}")
    if flt.status == "unlabeled":
        where.append("l.label IS NULL")
    elif flt.status == "review":
        where.append(_IN_REVIEW)
    elif flt.status == "labeled":
        where.append("l.label IN ('approved', 'rejected')")
    if flt.disagreement:
        where.append("l.label IS NOT NULL AND i.suggestion_label IS NOT NULL")
        where.append("l.label <> i.suggestion_label")
    if flt.date_from is not None:
        where.append(f"i.trade_time >= {arg(flt.date_from)}")
    if flt.date_to is not None:
        where.append(f"i.trade_time < {arg(flt.date_to)}")
    return where


def _after_sql(cursor: PageCursor, arg: Callable[[Any], str]) -> str:
    """Rows after ``cursor`` in the grid's order (trade time nulls last, trade id)."""
    trade_id = arg(cursor.trade_id)
    if cursor.trade_time is None:
        return f"(i.trade_time IS NULL AND i.trade_id > {trade_id})"
    when = arg(cursor.trade_time)
    return (
        f"(i.trade_time > {when} OR (i.trade_time = {when} AND i.trade_id > {trade_id})"
        " OR i.trade_time IS NULL)"
    )


def _before_sql(cursor: PageCursor, arg: Callable[[Any], str]) -> str:
    """Rows before ``cursor`` in the grid's order."""
    trade_id = arg(cursor.trade_id)
    if cursor.trade_time is None:
        return f"(i.trade_time IS NOT NULL OR i.trade_id < {trade_id})"
    when = arg(cursor.trade_time)
    return f"(i.trade_time < {when} OR (i.trade_time = {when} AND i.trade_id < {trade_id}))"


def _record_row(record: LabelRecord) -> tuple[Any, ...]:
    return (
        record.trade_id,
        record.label,
        record.quality_grade,
        record.user_comment,
        record.llm_agreed,
        record.labeler_id,
        record.timestamp,
        record.screenshot,
        record.chroma_vector_id,
    )


def _history_json(record: LabelRecord | None) -> str | None:
    """``label_history.previous``: the labels row, its columns as keys."""
    if record is None:
        return None
    return json.dumps(
        {
            "trade_id": record.trade_id,
            "label": record.label,
            "quality_grade": record.quality_grade,
            "user_comment": record.user_comment,
            "llm_agreed": record.llm_agreed,
            "labeler_id": record.labeler_id,
            "occurred_at": record.timestamp.isoformat(),
            "screenshot": record.screenshot,
            "chroma_vector_id": record.chroma_vector_id,
        }
    )


def _history_label(text: str | None) -> LabelRecord | None:
    """The record of a ``label_history.previous`` written by :func:`_history_json`."""
    if not text:
        return None
    data = json.loads(text)
    return LabelRecord(
        trade_id=data["trade_id"],
        label=data["label"],
        labeler_id=data["labeler_id"],
        timestamp=datetime.fromisoformat(data["occurred_at"]),
        quality_grade=data.get("quality_grade"),
        user_comment=data.get("user_comment"),
        llm_agreed=data.get("llm_agreed"),
        screenshot=data.get("screenshot"),
        chroma_vector_id=data.get("chroma_vector_id"),
    )


class Storage:
    """Queue items, labels, history, labelers, sessions and the outbox."""

    def __init__(self, pool: asyncpg.Pool | None) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("storage used before the database part started")
        return self._pool

    @pool.setter
    def pool(self, pool: asyncpg.Pool | None) -> None:
        self._pool = pool

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        await self.pool.fetchval("SELECT 1")

    # --- queue building ----------------------------------------------------------------

    async def upsert_png(
        self,
        *,
        trade_id: str,
        image_type: str,
        file_path: str,
        run_id: str,
        symbol: str | None,
        timeframe: str | None,
        setup_id: str | None,
        occurred_at: datetime,
    ) -> None:
        """Attach a PNG to its trade's item (created when new)."""
        column = "annotated_path" if image_type == "annotated" else "original_path"
        await self.pool.execute(
            f"""INSERT INTO items (trade_id, run_id, symbol, timeframe, setup_id, {column},
                    trade_time)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (trade_id) DO UPDATE SET
                    {column} = EXCLUDED.{column},
                    run_id = COALESCE(items.run_id, EXCLUDED.run_id),
                    symbol = COALESCE(items.symbol, EXCLUDED.symbol),
                    timeframe = COALESCE(items.timeframe, EXCLUDED.timeframe),
                    setup_id = COALESCE(items.setup_id, EXCLUDED.setup_id),
                    trade_time = COALESCE(items.trade_time, EXCLUDED.trade_time),
                    updated_at = now()""",
            trade_id,
            run_id,
            symbol,
            timeframe,
            setup_id,
            file_path,
            occurred_at,
        )

    async def upsert_trade_meta(
        self,
        *,
        trade_id: str,
        payload: JsonDocument,
        state: str,
        run_id: str,
        trade_time: datetime | None,
    ) -> None:
        """Store a trade_meta payload; a closed one is never replaced by an open one."""
        await self.pool.execute(
            """INSERT INTO items (trade_id, run_id, symbol, timeframe, setup_id, trade,
                   trade_state, trade_time)
               VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
               ON CONFLICT (trade_id) DO UPDATE SET
                   trade = CASE WHEN items.trade_state = 'closed' AND EXCLUDED.trade_state = 'open'
                                THEN items.trade ELSE EXCLUDED.trade END,
                   trade_state = CASE WHEN items.trade_state = 'closed' THEN 'closed'
                                      ELSE EXCLUDED.trade_state END,
                   run_id = COALESCE(items.run_id, EXCLUDED.run_id),
                   symbol = COALESCE(EXCLUDED.symbol, items.symbol),
                   timeframe = COALESCE(EXCLUDED.timeframe, items.timeframe),
                   setup_id = COALESCE(items.setup_id, EXCLUDED.setup_id),
                   trade_time = COALESCE(EXCLUDED.trade_time, items.trade_time),
                   updated_at = now()""",
            trade_id,
            run_id,
            payload.get("symbol") if isinstance(payload.get("symbol"), str) else None,
            payload.get("timeframe") if isinstance(payload.get("timeframe"), str) else None,
            payload.get("setup") if isinstance(payload.get("setup"), str) else None,
            json.dumps(payload),
            state,
            trade_time,
        )

    async def upsert_suggestion(
        self, *, trade_id: str, payload: JsonDocument, label: str | None, run_id: str
    ) -> None:
        """Store the LLM suggestion of a trade (the latest one wins)."""
        await self.pool.execute(
            """INSERT INTO items (trade_id, run_id, suggestion, suggestion_label)
               VALUES ($1, $2, $3::jsonb, $4)
               ON CONFLICT (trade_id) DO UPDATE SET
                   suggestion = EXCLUDED.suggestion,
                   suggestion_label = EXCLUDED.suggestion_label,
                   run_id = COALESCE(items.run_id, EXCLUDED.run_id),
                   updated_at = now()""",
            trade_id,
            run_id,
            json.dumps(payload),
            label,
        )

    # --- reading the queue -------------------------------------------------------------

    async def get_item(self, trade_id: str) -> QueueItem | None:
        """One item with its current label, or ``None``."""
        row = await self.pool.fetchrow(_ITEM_SELECT + " WHERE i.trade_id = $1", trade_id)
        return None if row is None else _item(row)

    async def list_items(
        self,
        flt: ItemFilter,
        *,
        size: int,
        after: PageCursor | None = None,
        before: PageCursor | None = None,
    ) -> ItemPage:
        """A page of the items matching ``flt``, oldest trade first.

        ``after`` / ``before`` (keyset cursors) pick the page after or before a trade;
        neither: the first page.
        """
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        where = _filter_sql(flt, arg)
        page_where = list(where)
        if after is not None:
            page_where.append(_after_sql(after, arg))
        elif before is not None:
            page_where.append(_before_sql(before, arg))
        sql = _ITEM_SELECT + _where(page_where)
        order = _ORDER_REVERSED if before is not None and after is None else _ORDER
        sql += f" ORDER BY {order} LIMIT {arg(size)}"
        rows = [_item(r) for r in await self.pool.fetch(sql, *args)]
        if order is _ORDER_REVERSED:
            rows.reverse()

        args = []
        where = _filter_sql(flt, arg)
        first = _before_sql(rows[0].cursor, arg) if rows else "false"
        counted = await self.pool.fetchrow(
            f"""SELECT count(*) AS total, count(*) FILTER (WHERE {first}) AS before_first
                FROM items i LEFT JOIN labels l ON l.trade_id = i.trade_id {_where(where)}""",
            *args,
        )
        assert counted is not None
        total = int(counted["total"])
        offset = int(counted["before_first"]) if rows else (total if after is not None else 0)
        last = rows[-1] if rows else None
        return ItemPage(
            items=rows,
            total=total,
            offset=offset,
            next=last.cursor if last is not None and offset + len(rows) < total else None,
            prev=rows[0].cursor
            if rows and offset > 0
            else (after if not rows and total > 0 else None),
        )

    async def facets(self) -> Facets:
        """Known symbols and run ids, for the filter drop-downs."""
        symbols = await self.pool.fetch(
            "SELECT DISTINCT symbol FROM items WHERE symbol IS NOT NULL ORDER BY 1"
        )
        runs = await self.pool.fetch(
            "SELECT DISTINCT run_id FROM items WHERE run_id IS NOT NULL ORDER BY 1"
        )
        return Facets(symbols=[r[0] for r in symbols], run_ids=[r[0] for r in runs])

    async def counts(self) -> QueueCounts:
        """Items per status, plus total and disagreements."""
        row = await self.pool.fetchrow(
            f"""SELECT count(*) AS total,
                      count(*) FILTER (WHERE l.label IS NULL) AS unlabeled,
                      count(*) FILTER (WHERE l.label IN ('approved', 'rejected')) AS labeled,
                      count(*) FILTER (WHERE {_IN_REVIEW}) AS review,
                      count(*) FILTER (WHERE l.label <> i.suggestion_label) AS disagreements,
                      count(l.llm_agreed) AS with_suggestion,
                      count(*) FILTER (WHERE l.llm_agreed) AS agreed
               FROM items i LEFT JOIN labels l ON l.trade_id = i.trade_id"""
        )
        assert row is not None
        return QueueCounts(**{key: int(row[key]) for key in row.keys()})

    # --- labels ------------------------------------------------------------------------

    async def current_label(self, trade_id: str) -> LabelRecord | None:
        """The trade's labels row, or ``None``."""
        row = await self.pool.fetchrow(
            f"SELECT {_LABEL_COLUMNS} FROM labels WHERE trade_id = $1", trade_id
        )
        return None if row is None else _label(row)

    async def save_label(self, record: LabelRecord, *, event: LabelSaved, undoable: bool) -> int:
        """Upsert the label, log it for undo, queue its event; returns the outbox id."""
        async with self.pool.acquire() as conn, conn.transaction():
            previous = await conn.fetchrow(
                f"SELECT {_LABEL_COLUMNS} FROM labels WHERE trade_id = $1 FOR UPDATE",
                record.trade_id,
            )
            await conn.execute(
                f"""INSERT INTO labels ({_LABEL_COLUMNS})
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (trade_id) DO UPDATE SET
                        label = EXCLUDED.label, quality_grade = EXCLUDED.quality_grade,
                        user_comment = EXCLUDED.user_comment, llm_agreed = EXCLUDED.llm_agreed,
                        labeler_id = EXCLUDED.labeler_id, occurred_at = EXCLUDED.occurred_at,
                        screenshot = EXCLUDED.screenshot,
                        chroma_vector_id = EXCLUDED.chroma_vector_id""",
                *_record_row(record),
            )
            if undoable:
                await conn.execute(
                    """INSERT INTO label_history (trade_id, labeler_id, label, occurred_at,
                           previous)
                       VALUES ($1, $2, $3, $4, $5::jsonb)""",
                    record.trade_id,
                    record.labeler_id,
                    record.label,
                    record.timestamp,
                    _history_json(None if previous is None else _label(previous)),
                )
            outbox_id = await OUTBOX.add(conn, event)
        return outbox_id

    async def last_undoable(self, labeler_id: str) -> UndoEntry | None:
        """The labeler's latest label decision not undone yet."""
        row = await self.pool.fetchrow(
            """SELECT id, trade_id, label, occurred_at, previous::text AS previous
               FROM label_history WHERE labeler_id = $1 AND undone_at IS NULL
               ORDER BY id DESC LIMIT 1""",
            labeler_id,
        )
        if row is None:
            return None
        return UndoEntry(
            id=row["id"],
            trade_id=row["trade_id"],
            label=row["label"],
            occurred_at=row["occurred_at"],
            previous=_history_label(row["previous"]),
        )

    async def mark_undone(self, history_id: int) -> None:
        """Take a decision off the undo stack."""
        await self.pool.execute(
            "UPDATE label_history SET undone_at = now() WHERE id = $1", history_id
        )

    async def export_rows(self) -> list[ExportRow]:
        """Every current label with its item's symbol, run and suggestion."""
        rows = await self.pool.fetch(
            f"""SELECT l.{_LABEL_COLUMNS.replace(", ", ", l.")}, i.symbol, i.run_id,
                       i.suggestion_label
                FROM labels l JOIN items i ON i.trade_id = l.trade_id
                ORDER BY l.occurred_at, l.trade_id"""
        )
        return [
            ExportRow(
                record=_label(r),
                symbol=r["symbol"],
                run_id=r["run_id"],
                suggestion_label=r["suggestion_label"],
            )
            for r in rows
        ]

    # --- outbox ------------------------------------------------------------------------

    async def outbox_done(self, outbox_id: int) -> None:
        """The event was published (JetStream acked it)."""
        await OUTBOX.mark_sent(self.pool, outbox_id)

    async def outbox_failed(self, outbox_id: int, error: str) -> None:
        """Record a failed publish attempt; the row stays for the relay."""
        await OUTBOX.mark_failed(self.pool, outbox_id, error)

    # --- labelers and sessions ---------------------------------------------------------

    async def add_labeler(self, labeler_id: str, password_hash: str) -> bool:
        """Create or reset a labeler's password; True when the labeler is new."""
        row = await self.pool.fetchrow(
            """INSERT INTO labelers (labeler_id, password_hash) VALUES ($1, $2)
               ON CONFLICT (labeler_id) DO UPDATE SET password_hash = EXCLUDED.password_hash
               RETURNING (xmax = 0) AS inserted""",
            labeler_id,
            password_hash,
        )
        return bool(row and row["inserted"])

    async def password_hash(self, labeler_id: str) -> str | None:
        """The stored hash of a labeler, or ``None`` when unknown."""
        value = await self.pool.fetchval(
            "SELECT password_hash FROM labelers WHERE labeler_id = $1", labeler_id
        )
        return None if value is None else str(value)

    async def list_labelers(self) -> list[str]:
        """Every labeler id."""
        rows = await self.pool.fetch("SELECT labeler_id FROM labelers ORDER BY 1")
        return [r[0] for r in rows]

    async def create_session(
        self, *, token_hash: str, labeler_id: str, csrf_token: str, expires_at: datetime
    ) -> None:
        """Store a new session (its token only hashed)."""
        await self.pool.execute(
            """INSERT INTO sessions (token_hash, labeler_id, csrf_token, expires_at)
               VALUES ($1, $2, $3, $4)""",
            token_hash,
            labeler_id,
            csrf_token,
            expires_at,
        )

    async def session(self, token_hash: str) -> StoredSession | None:
        """The labeler and CSRF token of a live session, or ``None``."""
        row = await self.pool.fetchrow(
            """SELECT labeler_id, csrf_token FROM sessions
               WHERE token_hash = $1 AND expires_at > now()""",
            token_hash,
        )
        return None if row is None else StoredSession(row["labeler_id"], row["csrf_token"])

    async def delete_session(self, token_hash: str) -> None:
        """Log out."""
        await self.pool.execute("DELETE FROM sessions WHERE token_hash = $1", token_hash)
