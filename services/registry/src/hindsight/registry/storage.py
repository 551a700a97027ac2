"""PostgreSQL repository of the registry (schema ``registry``, migrations in migrations/)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from hindsight.common.db import create_pool
from hindsight.common.errors import UnavailableError
from hindsight.registry.domain import AuditEntry, Stage

__all__ = ["MIGRATIONS_DIR", "SCHEMA", "Database", "Storage", "Tx"]

SCHEMA = "registry"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"

logger = logging.getLogger(__name__)

_VERSION_COLUMNS = """model_name, version, stage, training_run_id, created_at, registered_at,
    stage_changed_at, artifact_uri, sha256, headline, gates, gates_passed, refused_reason"""


def _version(row: asyncpg.Record, *, with_card: bool = False) -> dict[str, Any]:
    out = dict(row)
    for key in ("headline", "gates", "card"):
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    if not with_card:
        out.pop("card", None)
    return out


class Database:
    """The asyncpg pool as a service part: created (and migrated) at start, closed at stop."""

    def __init__(self, dsn: str | None) -> None:
        self._dsn = dsn
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The pool; UnavailableError before start."""
        if self._pool is None:
            raise UnavailableError("database pool not started")
        return self._pool

    async def start(self) -> None:
        """Connect and apply migrations."""
        if not self._dsn:
            raise UnavailableError("HINDSIGHT_DATABASE_URL is not set")
        # Work-around: hindsight.common.db logs "migration applied" with extra={"name": ...},
        # which LogRecord refuses (KeyError) whenever INFO is enabled. Quiet that logger while
        # migrating until the shared library is fixed.
        db_logger = logging.getLogger("hindsight.common.db")
        level = db_logger.level
        db_logger.setLevel(max(logging.WARNING, db_logger.getEffectiveLevel()))
        try:
            self._pool = await create_pool(self._dsn, schema=SCHEMA, migrations_dir=MIGRATIONS_DIR)
        finally:
            db_logger.setLevel(level)
        logger.info("database ready", extra={"schema": SCHEMA})

    async def stop(self) -> None:
        """Close every connection."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        """Readiness: one round trip."""
        await self.pool.fetchval("SELECT 1")


class Tx:
    """Statements that run inside one transaction holding the model's advisory lock."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def version(self, model_name: str, version: str) -> dict[str, Any] | None:
        """One version row (without the card), locked for update."""
        row = await self.conn.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model_name=$1 AND version=$2 "
            "FOR UPDATE",
            model_name,
            version,
        )
        return _version(row) if row else None

    async def production(self, model_name: str) -> dict[str, Any] | None:
        """The production version of a model, if any."""
        row = await self.conn.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model_name=$1 AND stage='production'",
            model_name,
        )
        return _version(row) if row else None

    async def insert_version(self, values: dict[str, Any]) -> bool:
        """Insert a version; False when (model_name, version) exists already."""
        inserted = await self.conn.fetchval(
            """INSERT INTO versions (model_name, version, stage, training_run_id, created_at,
                   artifact_uri, sha256, card, headline, gates, gates_passed, refused_reason)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9::jsonb,$10::jsonb,$11,$12)
               ON CONFLICT (model_name, version) DO NOTHING RETURNING true""",
            values["model_name"],
            values["version"],
            str(values["stage"]),
            values["training_run_id"],
            values["created_at"],
            values["artifact_uri"],
            values["sha256"],
            json.dumps(values.get("card")) if values.get("card") is not None else None,
            json.dumps(values.get("headline") or {}),
            json.dumps(values.get("gates") or []),
            bool(values.get("gates_passed", False)),
            values.get("refused_reason"),
        )
        return bool(inserted)

    async def set_stage(self, model_name: str, version: str, stage: Stage) -> None:
        """Move a version to ``stage``."""
        await self.conn.execute(
            "UPDATE versions SET stage=$3, stage_changed_at=now() "
            "WHERE model_name=$1 AND version=$2",
            model_name,
            version,
            str(stage),
        )

    async def set_gates(
        self, model_name: str, version: str, gates: list[dict[str, Any]], passed: bool
    ) -> None:
        """Store the latest gate verdict of a version."""
        await self.conn.execute(
            "UPDATE versions SET gates=$3::jsonb, gates_passed=$4 "
            "WHERE model_name=$1 AND version=$2",
            model_name,
            version,
            json.dumps(gates),
            passed,
        )

    async def audit(
        self,
        *,
        actor: str,
        action: str,
        model_name: str,
        version: str,
        from_stage: Stage | None,
        to_stage: Stage,
        reason: str,
    ) -> None:
        """Append one audit row."""
        await self.conn.execute(
            """INSERT INTO audit (actor, action, model_name, version, from_stage, to_stage, reason)
               VALUES ($1,$2,$3,$4,$5,$6,$7)""",
            actor,
            action,
            model_name,
            version,
            str(from_stage) if from_stage else None,
            str(to_stage),
            reason,
        )

    async def outbox(self, subject: str, payload: dict[str, Any]) -> int:
        """Queue an event to publish after commit; returns its outbox id."""
        value = await self.conn.fetchval(
            "INSERT INTO outbox (subject, payload) VALUES ($1, $2::jsonb) RETURNING id",
            subject,
            json.dumps(payload),
        )
        return int(value)

    async def history(self, model_name: str) -> list[AuditEntry]:
        """Stage moves of a model, oldest first."""
        rows = await self.conn.fetch(
            "SELECT version, from_stage, to_stage, action FROM audit "
            "WHERE model_name=$1 ORDER BY id",
            model_name,
        )
        return [
            AuditEntry(
                r["version"],
                Stage(r["from_stage"]) if r["from_stage"] else None,
                Stage(r["to_stage"]),
                r["action"],
            )
            for r in rows
        ]

    async def stages(self, model_name: str) -> dict[str, Stage]:
        """version -> stage of every version of a model."""
        rows = await self.conn.fetch(
            "SELECT version, stage FROM versions WHERE model_name=$1", model_name
        )
        return {r["version"]: Stage(r["stage"]) for r in rows}


class Storage:
    """Reads, the runs table, and transactions for stage changes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def locked(self, model_name: str) -> AsyncIterator[Tx]:
        """A transaction holding ``model_name``'s lock: one stage change at a time per model."""
        async with self.db.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('hindsight.registry'), hashtext($1))",
                model_name,
            )
            yield Tx(conn)

    async def record_run(self, run: dict[str, Any]) -> bool:
        """Insert a training run once (idempotent); True when new."""
        inserted = await self.db.pool.fetchval(
            """INSERT INTO training_runs (training_run_id, model_name, status, version, error,
                   dataset_size, duration_s, data_start, data_end, occurred_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)
               ON CONFLICT (training_run_id) DO NOTHING RETURNING true""",
            run["training_run_id"],
            run["model_name"],
            run["status"],
            run.get("version"),
            run.get("error"),
            run.get("dataset_size"),
            run.get("duration_s"),
            run.get("data_start"),
            run.get("data_end"),
            run["occurred_at"],
        )
        return bool(inserted)

    async def version_exists(self, model_name: str, version: str) -> bool:
        """True when the version is registered (in any stage)."""
        found = await self.db.pool.fetchval(
            "SELECT true FROM versions WHERE model_name=$1 AND version=$2", model_name, version
        )
        return bool(found)

    async def models(self) -> list[dict[str, Any]]:
        """Every model with its production version and number of versions."""
        rows = await self.db.pool.fetch(
            """SELECT model_name, count(*) AS versions,
                      max(version) FILTER (WHERE stage='production') AS production_version
               FROM versions GROUP BY model_name ORDER BY model_name"""
        )
        return [dict(r) for r in rows]

    async def versions(self, model_name: str) -> list[dict[str, Any]]:
        """Versions of a model, newest first."""
        rows = await self.db.pool.fetch(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model_name=$1 "
            "ORDER BY created_at DESC, version DESC",
            model_name,
        )
        return [_version(r) for r in rows]

    async def version(self, model_name: str, version: str) -> dict[str, Any] | None:
        """One version with its card."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_VERSION_COLUMNS}, card FROM versions WHERE model_name=$1 AND version=$2",
            model_name,
            version,
        )
        return _version(row, with_card=True) if row else None

    async def audit_log(self, model_name: str) -> list[dict[str, Any]]:
        """Audit rows of a model, oldest first."""
        rows = await self.db.pool.fetch(
            """SELECT at, actor, action, model_name, version, from_stage, to_stage, reason
               FROM audit WHERE model_name=$1 ORDER BY id""",
            model_name,
        )
        return [dict(r) for r in rows]

    async def deployments(self) -> list[dict[str, Any]]:
        """Every production version."""
        rows = await self.db.pool.fetch(
            """SELECT model_name, version, stage, artifact_uri, sha256 FROM versions
               WHERE stage='production' ORDER BY model_name"""
        )
        return [dict(r) for r in rows]

    async def stage_counts(self) -> list[dict[str, Any]]:
        """(model_name, stage, n) for every pair present."""
        rows = await self.db.pool.fetch(
            "SELECT model_name, stage, count(*) AS n FROM versions GROUP BY 1, 2 ORDER BY 1, 2"
        )
        return [dict(r) for r in rows]

    async def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest training runs, newest first."""
        rows = await self.db.pool.fetch(
            """SELECT training_run_id, model_name, status, version, error, dataset_size,
                      duration_s, data_start, data_end, occurred_at
               FROM training_runs ORDER BY occurred_at DESC LIMIT $1""",
            limit,
        )
        return [dict(r) for r in rows]

    async def best_candidates(self, limit: int = 5) -> list[dict[str, Any]]:
        """Candidate and staging versions with the highest test ROC-AUC."""
        rows = await self.db.pool.fetch(
            f"""SELECT {_VERSION_COLUMNS} FROM versions
                WHERE stage IN ('candidate', 'staging')
                ORDER BY (headline->>'test_roc_auc')::double precision DESC NULLS LAST
                LIMIT $1""",
            limit,
        )
        return [_version(r) for r in rows]

    async def dataset_sizes(self) -> list[dict[str, Any]]:
        """Per model: the latest completed run's data set size and time range."""
        rows = await self.db.pool.fetch(
            """SELECT DISTINCT ON (model_name) model_name, training_run_id, version,
                      dataset_size, data_start, data_end, occurred_at
               FROM training_runs WHERE status='completed'
               ORDER BY model_name, occurred_at DESC"""
        )
        return [dict(r) for r in rows]

    async def pending_outbox(self) -> int:
        """Outbox rows not yet published."""
        return int(await self.db.pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))

    @asynccontextmanager
    async def outbox_batch(
        self, limit: int = 100
    ) -> AsyncIterator[tuple[asyncpg.Connection, list[dict[str, Any]]]]:
        """Unsent outbox rows, oldest first, locked (SKIP LOCKED) for one relay."""
        async with self.db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT id, subject, payload FROM outbox WHERE sent_at IS NULL
                   ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                limit,
            )
            yield (
                conn,
                [
                    {"id": r["id"], "subject": r["subject"], "payload": json.loads(r["payload"])}
                    for r in rows
                ],
            )

    @staticmethod
    async def mark_sent(conn: asyncpg.Connection, outbox_id: int) -> None:
        """The event was acknowledged by JetStream."""
        await conn.execute(
            "UPDATE outbox SET sent_at=now(), attempts=attempts+1 WHERE id=$1", outbox_id
        )

    @staticmethod
    async def mark_failed(conn: asyncpg.Connection, outbox_id: int, error: str) -> None:
        """Publishing failed; the relay retries later."""
        await conn.execute(
            "UPDATE outbox SET attempts=attempts+1, last_error=$2 WHERE id=$1", outbox_id, error
        )
