"""The ``training_runs`` table: every training run the trainer reported, completed or not."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from hindsight.registry.storage.base import Executor, Row

__all__ = ["DatasetSize", "TrainingRun", "TrainingRuns"]


class TrainingRun(Row):
    """One ``training.completed`` run (a failed or skipped one registers no version)."""

    training_run_id: str
    model_name: str
    status: Literal["completed", "failed", "skipped"]
    version: str | None
    error: str | None
    dataset_size: int | None
    duration_s: float | None
    data_start: datetime | None
    data_end: datetime | None
    occurred_at: datetime


class DatasetSize(Row):
    """The data set of a model's latest completed run."""

    model_name: str
    training_run_id: str
    version: str | None
    dataset_size: int | None
    data_start: datetime | None
    data_end: datetime | None
    occurred_at: datetime


class TrainingRuns:
    """Statements over ``training_runs``."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def record(self, run: TrainingRun) -> bool:
        """Insert a run once (idempotent); True when new."""
        inserted = await self.db.fetchval(
            """INSERT INTO training_runs (training_run_id, model_name, status, version, error,
                   dataset_size, duration_s, data_start, data_end, occurred_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)
               ON CONFLICT (training_run_id) DO NOTHING RETURNING true""",
            run.training_run_id,
            run.model_name,
            run.status,
            run.version,
            run.error,
            run.dataset_size,
            run.duration_s,
            run.data_start,
            run.data_end,
            run.occurred_at,
        )
        return bool(inserted)

    async def recent(self, limit: int = 10) -> list[TrainingRun]:
        """The latest runs, newest first."""
        rows = await self.db.fetch(
            """SELECT training_run_id, model_name, status, version, error, dataset_size,
                      duration_s, data_start, data_end, occurred_at
               FROM training_runs ORDER BY occurred_at DESC LIMIT $1""",
            limit,
        )
        return [TrainingRun.of(r) for r in rows]

    async def dataset_sizes(self) -> list[DatasetSize]:
        """Per model: the latest completed run's data set size and time range."""
        rows = await self.db.fetch(
            """SELECT DISTINCT ON (model_name) model_name, training_run_id, version,
                      dataset_size, data_start, data_end, occurred_at
               FROM training_runs WHERE status='completed'
               ORDER BY model_name, occurred_at DESC"""
        )
        return [DatasetSize.of(r) for r in rows]
