"""The ``experiments`` table: canary / A-B / shadow experiments and their results."""

from __future__ import annotations

from dataclasses import dataclass

from hindsight.common.registry_api import (
    ArmResult,
    Decision,
    ExperimentKind,
    ExperimentRecord,
    ExperimentResult,
    ExperimentState,
    PromotionState,
)
from hindsight.registry.storage.base import Executor

__all__ = [
    "ArmResult",
    "ExperimentRecord",
    "ExperimentResult",
    "ExperimentTable",
    "NewExperiment",
]

_COLUMNS = """experiment_id, model_name, kind, control_version, candidate_version,
    candidate_share, min_samples_per_arm, alpha, auto_promote, state, decision, winner, p_value,
    result, promotion, started_at, started_by, ended_at, ended_by, end_reason"""


@dataclass(frozen=True, slots=True, kw_only=True)
class NewExperiment:
    """An experiment to start (state ``active``)."""

    experiment_id: str
    model_name: str
    kind: ExperimentKind
    control_version: str
    candidate_version: str
    candidate_share: float | None
    min_samples_per_arm: int
    alpha: float
    auto_promote: bool
    started_by: str


class ExperimentTable:
    """Statements over ``experiments``."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def insert(self, new: NewExperiment) -> None:
        """Insert a new active experiment (the partial unique index allows one per model)."""
        await self.db.execute(
            """INSERT INTO experiments (experiment_id, model_name, kind, control_version,
                   candidate_version, candidate_share, min_samples_per_arm, alpha,
                   auto_promote, state, started_by)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,'active',$10)""",
            new.experiment_id,
            new.model_name,
            str(new.kind),
            new.control_version,
            new.candidate_version,
            new.candidate_share,
            new.min_samples_per_arm,
            new.alpha,
            new.auto_promote,
            new.started_by,
        )

    async def get(self, experiment_id: str, *, lock: bool = False) -> ExperimentRecord | None:
        """One experiment; ``lock``: FOR UPDATE, inside a transaction."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM experiments WHERE experiment_id=$1"
            + (" FOR UPDATE" if lock else ""),
            experiment_id,
        )
        return ExperimentRecord.of(row, "result") if row else None

    async def active(self, model_name: str) -> ExperimentRecord | None:
        """The active experiment of a model, locked for update (inside a transaction)."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM experiments WHERE model_name=$1 AND state='active' FOR UPDATE",
            model_name,
        )
        return ExperimentRecord.of(row, "result") if row else None

    async def find(
        self, *, model_name: str | None = None, state: ExperimentState | None = None
    ) -> list[ExperimentRecord]:
        """Experiments, newest first, optionally of one model and/or in one state."""
        rows = await self.db.fetch(
            f"""SELECT {_COLUMNS} FROM experiments
                WHERE ($1::text IS NULL OR model_name=$1) AND ($2::text IS NULL OR state=$2)
                ORDER BY started_at DESC, experiment_id""",
            model_name,
            str(state) if state else None,
        )
        return [ExperimentRecord.of(r, "result") for r in rows]

    async def end(
        self,
        experiment_id: str,
        *,
        state: ExperimentState,
        decision: Decision,
        winner: str | None,
        p_value: float | None,
        result: ExperimentResult,
        promotion: PromotionState | None,
        ended_by: str,
        reason: str,
    ) -> None:
        """Store the end of an experiment and its result."""
        await self.db.execute(
            """UPDATE experiments SET state=$2, decision=$3, winner=$4, p_value=$5,
                   result=$6::jsonb, promotion=$7, ended_at=now(), ended_by=$8, end_reason=$9
               WHERE experiment_id=$1""",
            experiment_id,
            str(state),
            decision,
            winner,
            p_value,
            result.model_dump_json(),
            str(promotion) if promotion else None,
            ended_by,
            reason,
        )

    async def set_promotion(self, experiment_id: str, promotion: PromotionState) -> None:
        """pending -> applied | stale."""
        await self.db.execute(
            "UPDATE experiments SET promotion=$2 WHERE experiment_id=$1",
            experiment_id,
            str(promotion),
        )
