"""The shared outbox against a real PostgreSQL, in both table layouts the services use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from hindsight.common.events import Event, ModelDeployed
from hindsight.common.outbox import OutboxRelay, OutboxTable

pytestmark = pytest.mark.integration

SHA = "a" * 64

# The registry keeps published rows (sent_at, jsonb payload); labeling deletes them (text body).
LAYOUTS = {
    "kept": (
        OutboxTable(body_column="payload", keep_sent=True),
        """CREATE TABLE outbox (id bigserial PRIMARY KEY, subject text NOT NULL,
               payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
               sent_at timestamptz, attempts integer NOT NULL DEFAULT 0, last_error text)""",
    ),
    "deleted": (
        OutboxTable(body_column="body", keep_sent=False),
        """CREATE TABLE outbox (id bigserial PRIMARY KEY, subject text NOT NULL,
               body text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
               attempts integer NOT NULL DEFAULT 0, last_error text)""",
    ),
}


class _Database:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool


@pytest.fixture(params=sorted(LAYOUTS))
async def outbox(
    request: pytest.FixtureRequest, fresh_database: str
) -> AsyncIterator[tuple[OutboxTable, _Database]]:
    table, ddl = LAYOUTS[request.param]
    pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=2)
    await pool.execute(ddl)
    try:
        yield table, _Database(pool)
    finally:
        await pool.close()


def _deployed(version: str, **extra: Any) -> ModelDeployed:
    return ModelDeployed.create(
        source="test",
        model_name="m",
        version=version,
        stage="production",
        artifact_uri=f"models/m/{version}",
        sha256=SHA,
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        **extra,
    )


class _Publisher:
    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.fail_on = fail_on or set()
        self.sent: list[Event] = []

    async def __call__(self, event: Event) -> None:
        if isinstance(event, ModelDeployed) and event.version in self.fail_on:
            raise ConnectionError("nats is down")
        self.sent.append(event)


async def test_rows_are_published_in_order_as_written(
    outbox: tuple[OutboxTable, _Database],
) -> None:
    table, database = outbox
    async with database.pool.acquire() as conn, conn.transaction():
        reserved = await table.next_id(conn)
        first = _deployed("v1", deployment_id=f"test-{reserved}")
        assert await table.add(conn, first, outbox_id=reserved) == reserved
        second_id = await table.add(conn, _deployed("v2", extra_field={"kept": True}))
    assert second_id > reserved
    assert await table.backlog(database.pool) == 2

    publish = _Publisher()
    relay = OutboxRelay(table, database, publish, poll_s=60)
    assert await relay.drain() == 2
    assert publish.sent == [first, _deployed("v2", extra_field={"kept": True})]
    assert publish.sent[0].to_json_bytes() == first.to_json_bytes()
    assert await table.backlog(database.pool) == 0
    assert await relay.drain() == 0
    kept = await database.pool.fetchval("SELECT count(*) FROM outbox")
    assert kept == (2 if table.keep_sent else 0)


async def test_a_failed_publish_stops_the_pass_and_keeps_the_row(
    outbox: tuple[OutboxTable, _Database],
) -> None:
    table, database = outbox
    async with database.pool.acquire() as conn, conn.transaction():
        for version in ("v1", "v2", "v3"):
            await table.add(conn, _deployed(version))
    publish = _Publisher(fail_on={"v2"})
    relay = OutboxRelay(table, database, publish, poll_s=60)
    assert await relay.drain() == 1  # v1 sent; v2 failed; v3 waits behind it (order)
    failed = await database.pool.fetch(
        "SELECT subject, attempts, last_error FROM outbox WHERE attempts > 0 AND "
        + ("sent_at IS NULL" if table.keep_sent else "true")
    )
    assert [(r["attempts"], r["last_error"]) for r in failed] == [
        (1, "ConnectionError: nats is down")
    ]
    assert await table.backlog(database.pool) == 2
    publish.fail_on.clear()
    assert await relay.drain() == 2
    assert [e.version for e in publish.sent if isinstance(e, ModelDeployed)] == ["v1", "v2", "v3"]


async def test_an_unpublishable_row_is_marked_and_skipped(
    outbox: tuple[OutboxTable, _Database],
) -> None:
    table, database = outbox
    await database.pool.execute(
        f"INSERT INTO outbox (subject, {table.body_column}) VALUES ('no.such.subject', '{{}}')"
    )
    async with database.pool.acquire() as conn:
        await table.add(conn, _deployed("v1"))
    publish = _Publisher()
    assert await OutboxRelay(table, database, publish, poll_s=60).drain() == 1
    error = await database.pool.fetchval("SELECT last_error FROM outbox ORDER BY id LIMIT 1")
    assert error.startswith("unpublishable outbox row: InvalidInputError")
    assert len(publish.sent) == 1


async def test_the_relay_part_publishes_after_notify(
    outbox: tuple[OutboxTable, _Database],
) -> None:
    table, database = outbox
    backlog_after_pass: list[int] = []

    async def after_pass() -> None:
        backlog_after_pass.append(await table.backlog(database.pool))

    publish = _Publisher()
    relay = OutboxRelay(table, database, publish, poll_s=60, after_pass=after_pass)
    await relay.start()
    try:
        await _until(lambda: bool(backlog_after_pass))  # the first pass, at start
        async with database.pool.acquire() as conn:
            await table.add(conn, _deployed("v1"))
        relay.notify()  # long before the next poll
        await _until(lambda: len(backlog_after_pass) >= 2)
        assert [e.version for e in publish.sent if isinstance(e, ModelDeployed)] == ["v1"]
        assert backlog_after_pass[-1] == 0
    finally:
        await relay.stop()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)
