"""Read-only aggregates for evaluation reports, computed in SQL from the registry's tables.

A *scored signal* of a version is its first non-fallback prediction of that signal (a
signal scored twice by one version, e.g. redelivered, counts once); it is *evaluated*
when the signal's outcome has a result (win = 1, loss or breakeven = 0). The time axis
is the prediction's ``occurred_at`` (when the model made the call), UTC days.
"""

from __future__ import annotations

from datetime import datetime

from hindsight.common.registry_api import (
    CalibrationBin,
    DailyMetrics,
    EvaluationReport,
    EvaluationRollback,
    EvaluationVersion,
    ExperimentSpan,
    StageMove,
    VersionMetrics,
    Volume,
)
from hindsight.registry.domain import Stage
from hindsight.registry.storage.base import Executor

__all__ = [
    "CALIBRATION_BINS",
    "CalibrationBin",
    "DailyMetrics",
    "EvaluationReport",
    "EvaluationRollback",
    "EvaluationVersion",
    "ExperimentSpan",
    "StageMove",
    "VersionMetrics",
    "Volume",
    "read_evaluation",
]

CALIBRATION_BINS = 10
_CLIP = 1e-15

# $1 model, $2 from (inclusive), $3 to (exclusive)
_SCORED = f"""
WITH scored AS (
    SELECT DISTINCT ON (p.model_version, p.signal_id)
           p.model_version AS version, p.signal_id, p.p_success, p.occurred_at
    FROM predictions p
    JOIN versions v ON v.model_name = $1 AND v.version = p.model_version
    WHERE NOT p.fallback AND p.occurred_at >= $2 AND p.occurred_at < $3
      AND (p.model_name IS NULL OR p.model_name = $1)
    ORDER BY p.model_version, p.signal_id, p.occurred_at, p.prediction_id
), joined AS (
    SELECT s.version, s.p_success, s.occurred_at, o.win::double precision AS win,
           greatest(least(s.p_success, 1 - {_CLIP}), {_CLIP}) AS pc
    FROM scored s LEFT JOIN outcomes o ON o.signal_id = s.signal_id
)
"""

_METRICS = """count(*) AS predictions, count(win) AS n, avg(win) AS win_rate,
    avg(p_success) FILTER (WHERE win IS NOT NULL) AS mean_p,
    avg((p_success - win) ^ 2) AS brier,
    avg(-(win * ln(pc) + (1 - win) * ln(1 - pc))) AS log_loss"""

_TOTALS_SQL = _SCORED + f"SELECT version, {_METRICS} FROM joined GROUP BY version ORDER BY version"

_DAILY_SQL = (
    _SCORED
    + f"""SELECT version, (date_trunc('day', occurred_at AT TIME ZONE 'UTC'))::date AS day,
       {_METRICS} FROM joined GROUP BY 1, 2 ORDER BY 2, 1"""
)

_CALIBRATION_SQL = (
    _SCORED
    + f"""SELECT version, least(width_bucket(p_success, 0, 1, {CALIBRATION_BINS}),
                 {CALIBRATION_BINS}) AS bin,
       count(*) AS n, avg(p_success) AS mean_p, avg(win) AS win_rate
FROM joined WHERE win IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"""
)

_FALLBACK_SQL = """
SELECT (date_trunc('day', occurred_at AT TIME ZONE 'UTC'))::date AS day,
       count(*) FILTER (WHERE fallback) AS fallback, count(*) AS predictions
FROM predictions p
WHERE occurred_at >= $2 AND occurred_at < $3
  AND CASE WHEN p.model_name IS NOT NULL THEN p.model_name = $1
           ELSE p.model_version IS NULL
                OR EXISTS (SELECT 1 FROM versions v
                           WHERE v.model_name = $1 AND v.version = p.model_version) END
GROUP BY 1 ORDER BY 1"""

_EXPERIMENTS_SQL = """
SELECT experiment_id, model_name, kind, control_version, candidate_version, candidate_share,
       min_samples_per_arm, alpha, auto_promote, state, decision, winner, p_value, result,
       promotion, started_at, started_by, ended_at, ended_by, end_reason
FROM experiments
WHERE model_name = $1 AND started_at < $3 AND (ended_at IS NULL OR ended_at >= $2)
ORDER BY started_at, experiment_id"""

_STAGE_MOVES_SQL = """
SELECT at, actor, action, version, from_stage, to_stage, reason, experiment_id
FROM audit
WHERE model_name = $1 AND to_state IS NULL AND at >= $2 AND at < $3
ORDER BY id"""

_VERSIONS_SQL = """
SELECT version, stage, created_at, stage_changed_at, headline, gates_passed,
       (card -> 'feature_names') AS feature_names
FROM versions WHERE model_name = $1 ORDER BY created_at, version"""

_ROLLBACKS_SQL = """
SELECT version, at, rolled_back_to, details FROM degradation_rollbacks
WHERE model_name = $1 AND at >= $2 AND at < $3 ORDER BY at"""


async def read_evaluation(
    pool: Executor, model_name: str, start: datetime, end: datetime
) -> EvaluationReport:
    """The evaluation of ``model_name`` over ``[start, end)``, read in one snapshot."""
    args = (model_name, start, end)
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        totals = await conn.fetch(_TOTALS_SQL, *args)
        daily = await conn.fetch(_DAILY_SQL, *args)
        calibration = await conn.fetch(_CALIBRATION_SQL, *args)
        fallback = await conn.fetch(_FALLBACK_SQL, *args)
        experiments = await conn.fetch(_EXPERIMENTS_SQL, *args)
        moves = await conn.fetch(_STAGE_MOVES_SQL, *args)
        versions = await conn.fetch(_VERSIONS_SQL, model_name)
        rollbacks = await conn.fetch(_ROLLBACKS_SQL, *args)
    bins = [
        CalibrationBin.of(
            {
                **dict(row),
                "lower": (int(row["bin"]) - 1) / CALIBRATION_BINS,
                "upper": int(row["bin"]) / CALIBRATION_BINS,
            }
        )
        for row in calibration
    ]
    version_rows = [EvaluationVersion.of(r, "headline", "feature_names") for r in versions]
    production = next((v.version for v in version_rows if v.stage is Stage.PRODUCTION), None)
    return EvaluationReport(
        model_name=model_name,
        from_=start,
        to=end,
        production_version=production,
        versions=version_rows,
        totals=[VersionMetrics.of(r) for r in totals],
        daily=[DailyMetrics.of(r) for r in daily],
        calibration=bins,
        calibration_bins=CALIBRATION_BINS,
        volume=[Volume.of(r) for r in fallback],
        experiments=[ExperimentSpan.of(r, "result") for r in experiments],
        stage_moves=[StageMove.of(r) for r in moves],
        degradation_rollbacks=[EvaluationRollback.of(r, "details") for r in rollbacks],
    )
