"""PostgreSQL side of the registry (schema ``registry``, migrations in ``../migrations``).

One module per concern holds its records and statements: ``runs`` (training runs),
``versions``, ``audit``, ``experiments``, ``outcomes`` (predictions and outcomes),
``degradation`` (the monitor's rollbacks), ``feature_schemas`` and ``evaluation``
(read-only report aggregates); the outbox is the shared one of
:mod:`hindsight.common.outbox`. :class:`Store` holds the pool
(:class:`~hindsight.common.db.DatabasePart` opens it) and gives :class:`Tables` over it for
reads, or a :class:`Tx` for a change: one transaction holding the model's lock (or, for
what belongs to no model, a plain one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path

import asyncpg

from hindsight.common.errors import UnavailableError
from hindsight.common.events import Event
from hindsight.common.outbox import OutboxTable
from hindsight.registry.storage.audit import AuditLog, AuditRecord, FeatureSchemaAudit
from hindsight.registry.storage.base import JsonObject
from hindsight.registry.storage.degradation import DegradationRollback, DegradationRollbacks
from hindsight.registry.storage.evaluation import EvaluationReport, read_evaluation
from hindsight.registry.storage.experiments import (
    ArmResult,
    ExperimentRecord,
    ExperimentResult,
    ExperimentTable,
    NewExperiment,
)
from hindsight.registry.storage.feature_schemas import FeatureSchemaRecord, FeatureSchemas
from hindsight.registry.storage.outcomes import Outcome, Outcomes, PredictionsStored, Samples
from hindsight.registry.storage.runs import DatasetSize, TrainingRun, TrainingRuns
from hindsight.registry.storage.versions import (
    Deployment,
    ModelSummary,
    NewVersion,
    ProductionCard,
    StageCount,
    VersionRecord,
    Versions,
    VersionWithCard,
)

__all__ = [
    "MIGRATIONS_DIR",
    "OUTBOX",
    "SCHEMA",
    "ArmResult",
    "AuditRecord",
    "DatasetSize",
    "DegradationRollback",
    "Deployment",
    "EvaluationReport",
    "ExperimentRecord",
    "ExperimentResult",
    "FeatureSchemaAudit",
    "FeatureSchemaRecord",
    "JsonObject",
    "ModelSummary",
    "NewExperiment",
    "NewVersion",
    "Outcome",
    "PredictionsStored",
    "ProductionCard",
    "Samples",
    "StageCount",
    "Store",
    "Tables",
    "TrainingRun",
    "Tx",
    "VersionRecord",
    "VersionWithCard",
]

SCHEMA = "registry"
MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"
OUTBOX = OutboxTable(body_column="payload", keep_sent=True)
"""``model.deployed`` and ``ab.completed``; published rows keep ``sent_at`` (what went out)."""


class Tables:
    """Every registry table over one executor: the pool, or one transaction's connection."""

    def __init__(self, db: asyncpg.Pool | asyncpg.Connection) -> None:
        self.runs = TrainingRuns(db)
        self.versions = Versions(db)
        self.audit = AuditLog(db)
        self.experiments = ExperimentTable(db)
        self.outcomes = Outcomes(db)
        self.degradation = DegradationRollbacks(db)
        self.feature_schemas = FeatureSchemas(db)


class Tx(Tables):
    """The tables inside one transaction that holds a model's advisory lock."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(conn)
        self.conn = conn

    def savepoint(self) -> AbstractAsyncContextManager[object]:
        """A nested transaction: what fails inside it leaves no trace, the rest goes on."""
        savepoint: AbstractAsyncContextManager[object] = self.conn.transaction()
        return savepoint

    async def next_outbox_id(self) -> int:
        """Reserve the outbox id of an event that carries it (``deployment_id``)."""
        return await OUTBOX.next_id(self.conn)

    async def queue(self, event: Event, *, outbox_id: int | None = None) -> int:
        """Publish ``event`` once this transaction commits (the outbox); its outbox id."""
        return await OUTBOX.add(self.conn, event, outbox_id=outbox_id)


class Store:
    """The registry's database; ``pool`` is set by DatabasePart at start, cleared at stop."""

    def __init__(self) -> None:
        self.pool: asyncpg.Pool | None = None

    def connected(self) -> asyncpg.Pool:
        """The pool; UnavailableError before start."""
        if self.pool is None:
            raise UnavailableError("database pool not started")
        return self.pool

    @property
    def tables(self) -> Tables:
        """The tables over the pool (reads, and single statements)."""
        return Tables(self.connected())

    @asynccontextmanager
    async def locked(self, model_name: str) -> AsyncIterator[Tx]:
        """A transaction holding ``model_name``'s lock: one stage change at a time per model."""
        async with self.connected().acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('hindsight.registry'), hashtext($1))",
                model_name,
            )
            yield Tx(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction without a model's lock, for what belongs to no model."""
        async with self.connected().acquire() as conn, conn.transaction():
            yield Tx(conn)

    async def outbox_pending(self) -> int:
        """Outbox rows not published yet."""
        return await OUTBOX.backlog(self.connected())

    async def evaluation(self, model_name: str, start: datetime, end: datetime) -> EvaluationReport:
        """The evaluation aggregates of a model over ``[start, end)``."""
        return await read_evaluation(self.connected(), model_name, start, end)

    async def ping(self) -> None:
        """Readiness: one round trip."""
        await self.connected().fetchval("SELECT 1")
