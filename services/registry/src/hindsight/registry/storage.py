"""PostgreSQL repository of the registry (schema ``registry``, migrations in migrations/)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from hindsight.common.db import create_pool
from hindsight.common.errors import UnavailableError
from hindsight.common.events import PredictionLogged
from hindsight.registry.domain import AuditEntry, Stage

__all__ = ["MIGRATIONS_DIR", "SCHEMA", "Database", "PredictionsStored", "Storage", "Tx"]

SCHEMA = "registry"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"

logger = logging.getLogger(__name__)

_VERSION_COLUMNS = """model_name, version, stage, training_run_id, created_at, registered_at,
    stage_changed_at, artifact_uri, sha256, headline, gates, gates_passed, refused_reason"""


@dataclass(frozen=True, slots=True)
class PredictionsStored:
    """What one batch write of predictions did."""

    new: int
    """Rows written (the rest of the batch was stored already)."""
    joined: int
    """New rows whose signal already has an outcome with a result: evaluable now."""


def _version(row: asyncpg.Record, *, with_card: bool = False) -> dict[str, Any]:
    out = dict(row)
    for key in ("headline", "gates", "card"):
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    if not with_card:
        out.pop("card", None)
    return out


_EXPERIMENT_COLUMNS = """experiment_id, model_name, kind, control_version, candidate_version,
    candidate_share, min_samples_per_arm, alpha, auto_promote, state, decision, winner, p_value,
    result, promotion, started_at, started_by, ended_at, ended_by, end_reason"""


def _experiment(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get("result"), str):
        out["result"] = json.loads(out["result"])
    return out


# One prediction per signal and arm (the first logged), joined with a known outcome.
_ARM_SQL = """
SELECT p.p_success, o.win FROM (
    SELECT DISTINCT ON (signal_id) signal_id, p_success FROM predictions
    WHERE experiment_id=$1 AND arm=$2 AND model_version=$3 AND NOT fallback
    ORDER BY signal_id, occurred_at, prediction_id
) p JOIN outcomes o ON o.signal_id = p.signal_id WHERE o.win IS NOT NULL"""

# Shadow experiments: control = production's answers to the signals the shadow scored.
_SHADOW_CONTROL_SQL = """
SELECT p.p_success, o.win FROM (
    SELECT DISTINCT ON (signal_id) signal_id, p_success FROM predictions
    WHERE model_version=$3 AND NOT fallback AND (arm IS NULL OR arm=$2)
      AND (experiment_id IS NULL OR experiment_id=$1)
      AND signal_id IN (SELECT signal_id FROM predictions
                        WHERE experiment_id=$1 AND arm='shadow')
    ORDER BY signal_id, occurred_at, prediction_id
) p JOIN outcomes o ON o.signal_id = p.signal_id WHERE o.win IS NOT NULL"""

# Production's answers (outside experiments or as control), last N outcomes first.
_ROLLING_SQL = """
SELECT p.p_success, o.win FROM (
    SELECT DISTINCT ON (signal_id) signal_id, p_success FROM predictions
    WHERE model_version=$1 AND NOT fallback AND (arm IS NULL OR arm='control')
    ORDER BY signal_id, occurred_at, prediction_id
) p JOIN outcomes o ON o.signal_id = p.signal_id WHERE o.win IS NOT NULL
ORDER BY o.closed_at DESC, o.signal_id DESC LIMIT $2"""


async def _arm_samples(
    conn: asyncpg.Connection | asyncpg.Pool, experiment: dict[str, Any], arm: str
) -> tuple[list[float], list[float]]:
    """(y, p) of ``arm`` ('control', 'candidate' or 'shadow') of an experiment."""
    control = arm == "control"
    version = experiment["control_version"] if control else experiment["candidate_version"]
    sql = _SHADOW_CONTROL_SQL if control and experiment["kind"] == "shadow" else _ARM_SQL
    rows = await conn.fetch(sql, experiment["experiment_id"], arm, version)
    return [float(r["win"]) for r in rows], [float(r["p_success"]) for r in rows]


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
        experiment_id: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
    ) -> None:
        """Append one audit row (experiment rows carry the experiment's state move)."""
        await self.conn.execute(
            """INSERT INTO audit (actor, action, model_name, version, from_stage, to_stage,
                   reason, experiment_id, from_state, to_state)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)""",
            actor,
            action,
            model_name,
            version,
            str(from_stage) if from_stage else None,
            str(to_stage),
            reason,
            experiment_id,
            from_state,
            to_state,
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
            "WHERE model_name=$1 AND to_state IS NULL ORDER BY id",
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

    # --- experiments --------------------------------------------------------------------

    async def insert_experiment(self, values: dict[str, Any]) -> None:
        """Insert a new active experiment (the partial unique index allows one per model)."""
        await self.conn.execute(
            """INSERT INTO experiments (experiment_id, model_name, kind, control_version,
                   candidate_version, candidate_share, min_samples_per_arm, alpha,
                   auto_promote, state, started_by)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'active',$10)""",
            values["experiment_id"],
            values["model_name"],
            values["kind"],
            values["control_version"],
            values["candidate_version"],
            values["candidate_share"],
            values["min_samples_per_arm"],
            values["alpha"],
            values["auto_promote"],
            values["started_by"],
        )

    async def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        """One experiment, locked for update."""
        row = await self.conn.fetchrow(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE experiment_id=$1 FOR UPDATE",
            experiment_id,
        )
        return _experiment(row) if row else None

    async def active_experiment(self, model_name: str) -> dict[str, Any] | None:
        """The active experiment of a model, if any."""
        row = await self.conn.fetchrow(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments "
            "WHERE model_name=$1 AND state='active' FOR UPDATE",
            model_name,
        )
        return _experiment(row) if row else None

    async def end_experiment(
        self,
        experiment_id: str,
        *,
        state: str,
        decision: str,
        winner: str | None,
        p_value: float | None,
        result: dict[str, Any],
        promotion: str | None,
        ended_by: str,
        reason: str,
    ) -> None:
        """Store the end of an experiment and its result."""
        await self.conn.execute(
            """UPDATE experiments SET state=$2, decision=$3, winner=$4, p_value=$5,
                   result=$6::jsonb, promotion=$7, ended_at=now(), ended_by=$8, end_reason=$9
               WHERE experiment_id=$1""",
            experiment_id,
            state,
            decision,
            winner,
            p_value,
            json.dumps(result),
            promotion,
            ended_by,
            reason,
        )

    async def set_promotion(self, experiment_id: str, promotion: str) -> None:
        """pending -> applied | stale."""
        await self.conn.execute(
            "UPDATE experiments SET promotion=$2 WHERE experiment_id=$1", experiment_id, promotion
        )

    async def arm_samples(
        self, experiment: dict[str, Any], arm: str
    ) -> tuple[list[float], list[float]]:
        """(y, p) of one arm, inside this transaction."""
        return await _arm_samples(self.conn, experiment, arm)

    async def degradation_recorded(self, model_name: str, version: str) -> bool:
        """True when the monitor already rolled this version back."""
        found = await self.conn.fetchval(
            "SELECT true FROM degradation_rollbacks WHERE model_name=$1 AND version=$2",
            model_name,
            version,
        )
        return bool(found)

    async def record_degradation(
        self, model_name: str, version: str, rolled_back_to: str | None, details: dict[str, Any]
    ) -> None:
        """Remember a degradation verdict for a version (once)."""
        await self.conn.execute(
            """INSERT INTO degradation_rollbacks (model_name, version, rolled_back_to, details)
               VALUES ($1,$2,$3,$4::jsonb) ON CONFLICT DO NOTHING""",
            model_name,
            version,
            rolled_back_to,
            json.dumps(details),
        )


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

    async def version_count(self, model_name: str) -> int:
        """How many versions of ``model_name`` are registered (any stage)."""
        return int(
            await self.db.pool.fetchval(
                "SELECT count(*) FROM versions WHERE model_name=$1", model_name
            )
        )

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
            """SELECT at, actor, action, model_name, version, from_stage, to_stage, reason,
                      experiment_id, from_state, to_state
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

    # --- experiments, predictions, outcomes ---------------------------------------------

    async def experiments(
        self, *, model_name: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Experiments, newest first, optionally of one model and/or in one state."""
        rows = await self.db.pool.fetch(
            f"""SELECT {_EXPERIMENT_COLUMNS} FROM experiments
                WHERE ($1::text IS NULL OR model_name=$1) AND ($2::text IS NULL OR state=$2)
                ORDER BY started_at DESC, experiment_id""",
            model_name,
            state,
        )
        return [_experiment(r) for r in rows]

    async def experiment(self, experiment_id: str) -> dict[str, Any] | None:
        """One experiment."""
        row = await self.db.pool.fetchrow(
            f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE experiment_id=$1",
            experiment_id,
        )
        return _experiment(row) if row else None

    async def experiment_audit(self, experiment_id: str) -> list[dict[str, Any]]:
        """Audit rows of one experiment, oldest first."""
        rows = await self.db.pool.fetch(
            """SELECT at, actor, action, model_name, version, from_stage, to_stage, reason,
                      experiment_id, from_state, to_state
               FROM audit WHERE experiment_id=$1 ORDER BY id""",
            experiment_id,
        )
        return [dict(r) for r in rows]

    async def arm_samples(
        self, experiment: dict[str, Any], arm: str
    ) -> tuple[list[float], list[float]]:
        """(y, p) of one arm of an experiment."""
        return await _arm_samples(self.db.pool, experiment, arm)

    async def rolling_samples(self, version: str, window: int) -> tuple[list[float], list[float]]:
        """(y, p) of a version's last ``window`` outcomes (newest first)."""
        rows = await self.db.pool.fetch(_ROLLING_SQL, version, window)
        return [float(r["win"]) for r in rows], [float(r["p_success"]) for r in rows]

    async def production_cards(self) -> list[dict[str, Any]]:
        """model_name, version, card of every production version."""
        rows = await self.db.pool.fetch(
            "SELECT model_name, version, card FROM versions WHERE stage='production' "
            "ORDER BY model_name"
        )
        return [_version(r, with_card=True) for r in rows]

    async def insert_predictions(
        self, predictions: Sequence[PredictionLogged]
    ) -> PredictionsStored:
        """Store predictions once by prediction_id, in one statement (one round trip)."""
        columns: list[list[Any]] = [[] for _ in range(8)]
        for p in predictions:
            row = (
                p.prediction_id,
                p.signal_id,
                p.model_version,
                p.p_success,
                p.fallback,
                p.experiment_id,
                p.arm,
                p.occurred_at,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        # unnest of one array per column: a single round trip whatever the batch size.
        # DO NOTHING also skips a prediction_id repeated inside the batch.
        stored = await self.db.pool.fetchrow(
            """WITH new AS (
                   INSERT INTO predictions (prediction_id, signal_id, model_version, p_success,
                       fallback, experiment_id, arm, occurred_at)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[],
                       $4::double precision[], $5::boolean[], $6::text[], $7::text[],
                       $8::timestamptz[])
                   ON CONFLICT (prediction_id) DO NOTHING RETURNING signal_id)
               SELECT count(*) AS new,
                      count(*) FILTER (WHERE EXISTS (
                          SELECT 1 FROM outcomes o
                          WHERE o.signal_id = new.signal_id AND o.win IS NOT NULL)) AS joined
               FROM new""",
            *columns,
        )
        return PredictionsStored(new=int(stored["new"]), joined=int(stored["joined"]))

    async def upsert_outcome(self, values: dict[str, Any]) -> None:
        """Store a signal's outcome by signal_id; a later event with a result fills one in."""
        await self.db.pool.execute(
            """INSERT INTO outcomes (signal_id, result, win, closed_at) VALUES ($1,$2,$3,$4)
               ON CONFLICT (signal_id) DO UPDATE SET result=EXCLUDED.result, win=EXCLUDED.win,
                   closed_at=EXCLUDED.closed_at
               WHERE EXCLUDED.result IS NOT NULL""",
            values["signal_id"],
            values["result"],
            values["win"],
            values["closed_at"],
        )

    async def degradation_rollbacks(self) -> list[dict[str, Any]]:
        """Every version the monitor rolled back."""
        rows = await self.db.pool.fetch(
            "SELECT model_name, version, at, rolled_back_to, details "
            "FROM degradation_rollbacks ORDER BY at"
        )
        out = [dict(r) for r in rows]
        for r in out:
            if isinstance(r["details"], str):
                r["details"] = json.loads(r["details"])
        return out

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
