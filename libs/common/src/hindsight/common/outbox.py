"""The transactional outbox: an event commits with the change it announces, then is relayed.

A service writes the event (built once, as its pydantic model) into its ``outbox`` table in
the same transaction as the state change (:meth:`OutboxTable.add`); after the commit an
:class:`OutboxRelay` publishes the pending rows oldest first and marks each one once
JetStream has acknowledged it. A publish that fails leaves the row (attempts and last error
recorded) for the next pass, so a crash or a NATS outage loses nothing; JetStream drops a
re-publish of the same event by its ``Nats-Msg-Id``.

Each service keeps the table in its own schema: ``id bigserial``, ``subject``, the event's
JSON (column named by :attr:`OutboxTable.body_column`), ``attempts``, ``last_error``, and
``sent_at`` when published rows are kept (:attr:`OutboxTable.keep_sent`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from pydantic import ValidationError

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import EVENT_TYPES, Event
from hindsight.common.tasks import BackgroundTask

__all__ = ["MAX_ERROR_CHARS", "OutboxBatch", "OutboxRelay", "OutboxRow", "OutboxTable", "Publish"]

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 2000
"""``last_error`` keeps this much of the error text."""

Publish = Callable[[Event], Awaitable[object]]
"""Publishes one event; raises unless JetStream acknowledged it."""


class _HasPool(Protocol):
    # The service's asyncpg pool holder (the object DatabasePart sets ``pool`` on).
    @property
    def pool(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A queued event: its row id, subject and JSON as written."""

    id: int
    subject: str
    body: str

    def event(self) -> Event:
        """The event model of the row; InvalidInputError or ValidationError when it is not one."""
        model = EVENT_TYPES.get(self.subject)
        if model is None:
            raise InvalidInputError(f"no event model for subject {self.subject!r}", field="subject")
        return model.model_validate_json(self.body)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxTable:
    """The SQL of one service's ``outbox`` table (in the schema on the connection's path)."""

    body_column: str = "payload"
    """Column holding the event's JSON (``jsonb`` or ``text``)."""
    keep_sent: bool = True
    """True: a published row gets ``sent_at`` and stays (what went out, when); False: deleted."""

    @property
    def _pending(self) -> str:
        return "sent_at IS NULL" if self.keep_sent else "true"

    async def next_id(self, conn: asyncpg.Connection) -> int:
        """Reserve the id of a row :meth:`add` will write (for events that carry it)."""
        value = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('outbox', 'id'))")
        return int(value)

    async def add(
        self, conn: asyncpg.Connection, event: Event, *, outbox_id: int | None = None
    ) -> int:
        """Queue ``event`` inside the caller's transaction; returns the row id."""
        body = event.to_json_bytes().decode()
        if outbox_id is None:
            value = await conn.fetchval(
                f"INSERT INTO outbox (subject, {self.body_column}) VALUES ($1, $2) RETURNING id",
                event.subject,
                body,
            )
            return int(value)
        await conn.execute(
            f"INSERT INTO outbox (id, subject, {self.body_column}) VALUES ($1, $2, $3)",
            outbox_id,
            event.subject,
            body,
        )
        return outbox_id

    async def backlog(self, conn: asyncpg.Pool | asyncpg.Connection) -> int:
        """Rows not published yet."""
        return int(await conn.fetchval(f"SELECT count(*) FROM outbox WHERE {self._pending}"))

    @asynccontextmanager
    async def claim(self, pool: asyncpg.Pool, *, limit: int = 100) -> AsyncIterator[OutboxBatch]:
        """Pending rows, oldest first, locked (SKIP LOCKED) in one transaction for one relay."""
        async with pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(
                f"""SELECT id, subject, {self.body_column}::text AS body FROM outbox
                    WHERE {self._pending} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                limit,
            )
            rows = [OutboxRow(int(r["id"]), r["subject"], r["body"]) for r in records]
            yield OutboxBatch(self, conn, rows)

    async def mark_sent(self, conn: asyncpg.Pool | asyncpg.Connection, outbox_id: int) -> None:
        """JetStream acknowledged the row's event."""
        if self.keep_sent:
            await conn.execute(
                "UPDATE outbox SET sent_at=now(), attempts=attempts+1 WHERE id=$1", outbox_id
            )
        else:
            await conn.execute("DELETE FROM outbox WHERE id=$1", outbox_id)

    async def mark_failed(
        self, conn: asyncpg.Pool | asyncpg.Connection, outbox_id: int, error: str
    ) -> None:
        """A publish attempt failed; the row stays for the next pass."""
        await conn.execute(
            "UPDATE outbox SET attempts=attempts+1, last_error=$2 WHERE id=$1",
            outbox_id,
            error[:MAX_ERROR_CHARS],
        )


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    """Rows claimed by :meth:`OutboxTable.claim`, marked on the claiming connection."""

    table: OutboxTable
    conn: asyncpg.Connection
    rows: list[OutboxRow]

    async def sent(self, row: OutboxRow) -> None:
        """Mark ``row`` published."""
        await self.table.mark_sent(self.conn, row.id)

    async def failed(self, row: OutboxRow, error: str) -> None:
        """Record a failed attempt of ``row``."""
        await self.table.mark_failed(self.conn, row.id, error)


class OutboxRelay:
    """A service part publishing committed outbox rows in order until each is acknowledged.

    It looks every ``poll_s`` seconds, or at once after :meth:`notify` (a commit queued
    something). ``after_pass`` runs after every pass (a service refreshes gauges there).
    """

    def __init__(
        self,
        table: OutboxTable,
        database: _HasPool,
        publish: Publish,
        *,
        poll_s: float,
        name: str = "outbox-relay",
        after_pass: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.table = table
        self.database = database
        self.publish = publish
        self.poll_s = poll_s
        self.after_pass = after_pass
        self._wake = asyncio.Event()
        self._task = BackgroundTask(name)

    def notify(self) -> None:
        """Something was committed: look now instead of at the next poll."""
        self._wake.set()

    async def drain(self) -> int:
        """Publish pending rows oldest first; stop at the first failed publish. Rows sent."""
        sent = 0
        async with self.table.claim(self.database.pool) as batch:
            for row in batch.rows:
                try:
                    event = row.event()
                except (InvalidInputError, ValidationError) as exc:  # a bug: never publishable
                    error = f"unpublishable outbox row: {type(exc).__name__}: {exc}"
                    await batch.failed(row, error)
                    logger.error(error, extra={"outbox_id": row.id})
                    continue
                try:
                    await self.publish(event)
                except Exception as exc:  # NATS down, not connected yet, timeout: retry later
                    error = f"{type(exc).__name__}: {exc}"
                    await batch.failed(row, error)
                    logger.warning("outbox publish failed, will retry: %s", error)
                    break
                await batch.sent(row)
                sent += 1
        return sent

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.drain()
                if self.after_pass is not None:
                    await self.after_pass()
            except Exception:  # database or NATS down: keep trying, never die
                logger.exception("outbox relay pass failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def start(self) -> None:
        """Relay in the background (the first pass sends what a previous process left)."""
        self._task.start(self._run())

    async def stop(self) -> None:
        """Stop relaying; unsent rows stay for the next start."""
        await self._task.stop()
