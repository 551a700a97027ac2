"""The migration runner against a real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from hindsight.common.db import MigrationError, create_pool, load_migrations, migrate


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


MIGRATIONS = {
    "0001_create_things.sql": "CREATE TABLE things (id serial PRIMARY KEY, name text NOT NULL);",
    # Slow on purpose: widens the window in which a second runner could race.
    "0002_seed_things.sql": "SELECT pg_sleep(0.3); INSERT INTO things (name) VALUES ('seed');",
    "0003_add_column.sql": "ALTER TABLE things ADD COLUMN note text;",
}


@pytest.mark.unit
def test_load_orders_by_version_and_rejects_bad_names(tmp_path: Path) -> None:
    directory = _write(tmp_path / "m", {"0010_b.sql": "SELECT 1;", "0002_a.sql": "SELECT 1;"})
    assert [m.version for m in load_migrations(directory)] == [2, 10]
    _write(directory, {"3_Bad-Name.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        load_migrations(directory)


@pytest.mark.unit
def test_duplicate_versions_are_rejected(tmp_path: Path) -> None:
    directory = _write(tmp_path / "m", {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="share a version"):
        load_migrations(directory)


@pytest.mark.integration
async def test_concurrent_runners_apply_each_migration_once(
    fresh_database: str, tmp_path: Path
) -> None:
    migrations = load_migrations(_write(tmp_path / "m", MIGRATIONS))
    conns = [await asyncpg.connect(fresh_database) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, "svc", migrations) for c in conns))
        applied = sorted(m.version for result in results for m in result)
        assert applied == [1, 2, 3], "every migration applied by exactly one runner"
        check = conns[0]
        assert await check.fetchval("SELECT count(*) FROM svc.things") == 1
        rows = await check.fetch("SELECT version, name FROM svc.schema_migrations ORDER BY 1")
        assert [(r["version"], r["name"]) for r in rows] == [
            (1, "create_things"),
            (2, "seed_things"),
            (3, "add_column"),
        ]
        # Running again applies nothing.
        assert await migrate(check, "svc", migrations) == []
    finally:
        for conn in conns:
            await conn.close()


@pytest.mark.integration
async def test_edited_migration_is_refused(fresh_database: str, tmp_path: Path) -> None:
    directory = _write(
        tmp_path / "m", {"0001_create_things.sql": MIGRATIONS["0001_create_things.sql"]}
    )
    conn = await asyncpg.connect(fresh_database)
    try:
        await migrate(conn, "svc", load_migrations(directory))
        _write(directory, {"0001_create_things.sql": "CREATE TABLE other (id int);"})
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await migrate(conn, "svc", load_migrations(directory))
    finally:
        await conn.close()


@pytest.mark.integration
async def test_failed_migration_rolls_back_and_is_not_recorded(
    fresh_database: str, tmp_path: Path
) -> None:
    directory = _write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE a (id int);",
            "0002_broken.sql": "CREATE TABLE b (id int); SELECT no_such_function();",
        },
    )
    conn = await asyncpg.connect(fresh_database)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, "svc", load_migrations(directory))
        versions = await conn.fetch("SELECT version FROM svc.schema_migrations")
        assert [r["version"] for r in versions] == [1]
        assert await conn.fetchval("SELECT to_regclass('svc.b')") is None
    finally:
        await conn.close()


@pytest.mark.integration
async def test_pool_uses_the_service_schema(fresh_database: str, tmp_path: Path) -> None:
    directory = _write(
        tmp_path / "m", {"0001_create_things.sql": MIGRATIONS["0001_create_things.sql"]}
    )
    pool = await create_pool(fresh_database, schema="svc", migrations_dir=directory)
    try:
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO things (name) VALUES ('x')")
            assert await conn.fetchval("SELECT count(*) FROM svc.things") == 1
    finally:
        await pool.close()
