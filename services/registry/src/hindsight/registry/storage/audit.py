"""The ``audit`` table: one row per stage move, experiment transition and feature schema."""

from __future__ import annotations

from datetime import datetime

from hindsight.registry.domain import AuditEntry, ExperimentState, Stage
from hindsight.registry.storage.base import Executor, Row

__all__ = ["AuditLog", "AuditRecord", "FeatureSchemaAudit"]

_COLUMNS = """at, actor, action, model_name, version, from_stage, to_stage, reason,
    experiment_id, from_state, to_state"""


class AuditRecord(Row):
    """Who moved what, when and why (experiment rows carry the experiment's state move)."""

    at: datetime
    actor: str
    action: str
    model_name: str
    version: str
    from_stage: Stage | None
    to_stage: Stage
    reason: str
    experiment_id: str | None
    from_state: ExperimentState | None
    to_state: ExperimentState | None


class FeatureSchemaAudit(Row):
    """Who registered a feature schema, when, and with which content hash (``reason``)."""

    at: datetime
    actor: str
    action: str
    feature_schema_version: int
    reason: str


class AuditLog:
    """Statements over ``audit``."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def append(
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
        from_state: ExperimentState | None = None,
        to_state: ExperimentState | None = None,
    ) -> None:
        """Append one row."""
        await self.db.execute(
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
            str(from_state) if from_state else None,
            str(to_state) if to_state else None,
        )

    async def append_feature_schema(
        self, *, actor: str, action: str, version: int, reason: str
    ) -> None:
        """Append one row about a feature schema (no model, version or stage)."""
        await self.db.execute(
            """INSERT INTO audit (actor, action, feature_schema_version, reason)
               VALUES ($1,$2,$3,$4)""",
            actor,
            action,
            version,
            reason,
        )

    async def of_feature_schema(self, version: int) -> list[FeatureSchemaAudit]:
        """Rows of one feature schema, oldest first."""
        rows = await self.db.fetch(
            "SELECT at, actor, action, feature_schema_version, reason FROM audit "
            "WHERE feature_schema_version=$1 ORDER BY id",
            version,
        )
        return [FeatureSchemaAudit.of(r) for r in rows]

    async def of_model(self, model_name: str) -> list[AuditRecord]:
        """Rows of a model, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM audit WHERE model_name=$1 ORDER BY id", model_name
        )
        return [AuditRecord.of(r) for r in rows]

    async def of_experiment(self, experiment_id: str) -> list[AuditRecord]:
        """Rows of one experiment, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM audit WHERE experiment_id=$1 ORDER BY id", experiment_id
        )
        return [AuditRecord.of(r) for r in rows]

    async def history(self, model_name: str) -> list[AuditEntry]:
        """Stage moves of a model (no experiment transitions), oldest first."""
        rows = await self.db.fetch(
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
