"""PostgreSQL: an asyncpg pool and a per-schema migration runner.

Each service owns one schema named after it and keeps its migrations as ordered SQL
files (``0001_create_signals.sql``, ``0002_...``). :func:`migrate` applies each file
exactly once, in order, each in its own transaction, and records it in
``<schema>.schema_migrations``. A transaction-level advisory lock per schema makes
replicas that start at the same moment take turns instead of racing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg

from hindsight.common.errors import ConfigurationError, UnavailableError

__all__ = [
    "AppliedMigration",
    "DatabasePart",
    "Migration",
    "MigrationError",
    "create_pool",
    "load_migrations",
    "migrate",
]

logger = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(?P<version>\d{4,})_(?P<name>[a-z0-9_]+)\.sql$")
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class MigrationError(ConfigurationError):
    """The migration files or the recorded history cannot be reconciled."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file: ``version`` orders it, ``checksum`` detects later edits."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``<schema>.schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


def load_migrations(directory: Path) -> list[Migration]:
    """Read ``NNNN_name.sql`` files in version order; anything else there is an error."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    migrations: list[Migration] = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(
            Migration(int(match["version"]), match["name"], path.read_text(encoding="utf-8"))
        )
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migration files share a version number")
    return sorted(migrations, key=lambda m: m.version)


def _lock_key(schema: str) -> int:
    # A stable signed 64-bit key per schema, so services never block each other.
    digest = hashlib.sha256(f"hindsight.migrations.{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(
    conn: asyncpg.Connection, schema: str, migrations: list[Migration]
) -> list[AppliedMigration]:
    """Apply the migrations not yet recorded in ``schema``; return the ones applied now.

    Each migration runs in a transaction that first takes the schema's advisory lock,
    so a second runner waits, then sees the row the first one wrote and skips it.
    """
    if not _SCHEMA_RE.match(schema):
        raise MigrationError(f"schema name {schema!r} is not a plain lower-case identifier")
    key = _lock_key(schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
    applied: list[AppliedMigration] = []
    for migration in migrations:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            row = await conn.fetchrow(
                f"SELECT checksum FROM {schema}.schema_migrations WHERE version = $1",
                migration.version,
            )
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{schema} migration {migration.version:04d}_{migration.name} was "
                        "edited after it was applied; add a new migration instead"
                    )
                continue
            await conn.execute(f"SET LOCAL search_path TO {schema}, public")
            await conn.execute(migration.sql)
            done = await conn.fetchrow(
                f"""INSERT INTO {schema}.schema_migrations (version, name, checksum)
                    VALUES ($1, $2, $3) RETURNING applied_at""",
                migration.version,
                migration.name,
                migration.checksum,
            )
            assert done is not None
            applied.append(
                AppliedMigration(
                    migration.version, migration.name, migration.checksum, done["applied_at"]
                )
            )
            logger.info(
                "migration applied",
                extra={"schema": schema, "version": migration.version, "migration": migration.name},
            )
    return applied


async def create_pool(
    dsn: str,
    *,
    schema: str,
    migrations_dir: Path | None = None,
    min_size: int = 1,
    max_size: int = 10,
    timeout: float = 10.0,
) -> asyncpg.Pool:
    """A pool whose connections use ``schema``; migrations applied first when given."""
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            server_settings={"search_path": f"{schema},public", "application_name": schema},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise UnavailableError(f"PostgreSQL is not reachable: {exc}") from exc
    if migrations_dir is not None:
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema, load_migrations(migrations_dir))
        except BaseException:
            await pool.close()
            raise
    return pool


class _PoolHolder(Protocol):
    pool: Any


class _HasDsn(Protocol):
    def database_dsn(self) -> str | None: ...


class DatabasePart:
    """A service's pool as a runtime part: opened (and its schema migrated) on start,
    handed to ``holder.pool``, closed on stop."""

    def __init__(
        self, settings: _HasDsn, holder: _PoolHolder, *, schema: str, migrations_dir: Path
    ) -> None:
        self.settings = settings
        self.holder = holder
        self.schema = schema
        self.migrations_dir = migrations_dir
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        dsn = self.settings.database_dsn()
        if dsn is None:
            raise ConfigurationError("HINDSIGHT_DATABASE_URL is not set")
        self._pool = await create_pool(dsn, schema=self.schema, migrations_dir=self.migrations_dir)
        self.holder.pool = self._pool

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            self.holder.pool = None
