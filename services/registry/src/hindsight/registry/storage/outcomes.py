"""The ``predictions`` and ``outcomes`` tables: answers given and how their trades ended.

A sample is one prediction per signal (the first logged) joined with the signal's known
outcome: ``y`` 1 for a win, 0 otherwise; ``p`` the prediction's ``p_success``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hindsight.common.events import PredictionLogged
from hindsight.registry.domain import ExperimentKind
from hindsight.registry.storage.base import Executor
from hindsight.registry.storage.experiments import ExperimentRecord

__all__ = ["Outcome", "Outcomes", "PredictionsStored", "Samples"]

# One prediction per signal and arm (the first logged), joined with a known outcome. A
# prediction that names its model (model_name) counts only for that model; one without it
# is matched by version alone.
_ARM_SQL = """
SELECT p.p_success, o.win FROM (
    SELECT DISTINCT ON (signal_id) signal_id, p_success FROM predictions
    WHERE experiment_id=$1 AND arm=$2 AND model_version=$3 AND NOT fallback
      AND (model_name IS NULL OR model_name=$4)
    ORDER BY signal_id, occurred_at, prediction_id
) p JOIN outcomes o ON o.signal_id = p.signal_id WHERE o.win IS NOT NULL"""

# Shadow experiments: control = production's answers to the signals the shadow scored.
_SHADOW_CONTROL_SQL = """
SELECT p.p_success, o.win FROM (
    SELECT DISTINCT ON (signal_id) signal_id, p_success FROM predictions
    WHERE model_version=$3 AND NOT fallback AND (arm IS NULL OR arm=$2)
      AND (experiment_id IS NULL OR experiment_id=$1)
      AND (model_name IS NULL OR model_name=$4)
      AND signal_id IN (SELECT signal_id FROM predictions
                        WHERE experiment_id=$1 AND arm='shadow')
    ORDER BY signal_id, occurred_at, prediction_id
) p JOIN outcomes o ON o.signal_id = p.signal_id WHERE o.win IS NOT NULL"""

# Production's answers (outside experiments or as control), last N outcomes first.
_ROLLING_SQL = """
SELECT p.p_success, o.win FROM (
    SELECT DISTINCT ON (signal_id) signal_id, p_success FROM predictions
    WHERE model_version=$1 AND NOT fallback AND (arm IS NULL OR arm='control')
      AND (model_name IS NULL OR model_name=$3)
    ORDER BY signal_id, occurred_at, prediction_id
) p JOIN outcomes o ON o.signal_id = p.signal_id WHERE o.win IS NOT NULL
ORDER BY o.closed_at DESC, o.signal_id DESC LIMIT $2"""


@dataclass(frozen=True, slots=True)
class PredictionsStored:
    """What one batch write of predictions did."""

    new: int
    """Rows written (the rest of the batch was stored already)."""
    joined: int
    """New rows whose signal already has an outcome with a result: evaluable now."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a signal's trade ended; ``win`` None when the event had no result (ignored)."""

    signal_id: str
    result: str | None
    win: int | None
    closed_at: datetime


@dataclass(frozen=True, slots=True)
class Samples:
    """Outcome-joined predictions: ``y`` (1 win, 0 loss or breakeven) and ``p``."""

    y: list[float]
    p: list[float]

    @classmethod
    def of(cls, rows: Sequence[Any]) -> Samples:
        """From rows of ``(p_success, win)``."""
        return cls([float(r["win"]) for r in rows], [float(r["p_success"]) for r in rows])


class Outcomes:
    """Statements over ``predictions`` and ``outcomes``."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def insert_predictions(
        self, predictions: Sequence[PredictionLogged]
    ) -> PredictionsStored:
        """Store predictions once by prediction_id, in one statement (one round trip)."""
        columns: list[list[object]] = [[] for _ in range(9)]
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
                p.model_name,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        # unnest of one array per column: a single round trip whatever the batch size.
        # DO NOTHING also skips a prediction_id repeated inside the batch.
        stored = await self.db.fetchrow(
            """WITH new AS (
                   INSERT INTO predictions (prediction_id, signal_id, model_version, p_success,
                       fallback, experiment_id, arm, occurred_at, model_name)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[],
                       $4::double precision[], $5::boolean[], $6::text[], $7::text[],
                       $8::timestamptz[], $9::text[])
                   ON CONFLICT (prediction_id) DO NOTHING RETURNING signal_id)
               SELECT count(*) AS new,
                      count(*) FILTER (WHERE EXISTS (
                          SELECT 1 FROM outcomes o
                          WHERE o.signal_id = new.signal_id AND o.win IS NOT NULL)) AS joined
               FROM new""",
            *columns,
        )
        return PredictionsStored(new=int(stored["new"]), joined=int(stored["joined"]))

    async def with_result(self, signal_ids: Sequence[str]) -> int:
        """How many of ``signal_ids`` have an outcome with a result (committed ones, now)."""
        found = await self.db.fetchval(
            "SELECT count(*) FROM outcomes WHERE signal_id = ANY($1::text[]) AND win IS NOT NULL",
            list(signal_ids),
        )
        return int(found or 0)

    async def upsert_outcome(self, outcome: Outcome) -> None:
        """Store a signal's outcome by signal_id; a later event with a result fills one in."""
        await self.db.execute(
            """INSERT INTO outcomes (signal_id, result, win, closed_at) VALUES ($1,$2,$3,$4)
               ON CONFLICT (signal_id) DO UPDATE SET result=EXCLUDED.result, win=EXCLUDED.win,
                   closed_at=EXCLUDED.closed_at
               WHERE EXCLUDED.result IS NOT NULL""",
            outcome.signal_id,
            outcome.result,
            outcome.win,
            outcome.closed_at,
        )

    async def arm_samples(self, experiment: ExperimentRecord, arm: str) -> Samples:
        """Samples of ``arm`` ('control', 'candidate' or 'shadow') of an experiment."""
        control = arm == "control"
        version = experiment.control_version if control else experiment.candidate_version
        shadow = control and experiment.kind is ExperimentKind.SHADOW
        sql = _SHADOW_CONTROL_SQL if shadow else _ARM_SQL
        return Samples.of(
            await self.db.fetch(sql, experiment.experiment_id, arm, version, experiment.model_name)
        )

    async def rolling_samples(self, model_name: str, version: str, window: int) -> Samples:
        """Samples of a version's last ``window`` outcomes (newest first)."""
        return Samples.of(await self.db.fetch(_ROLLING_SQL, version, window, model_name))
