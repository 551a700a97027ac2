"""The trainer's own Prometheus metrics (prefix ``hindsight_trainer_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["LAST_RUN_DURATION", "ROWS_INGESTED", "RUNS"]

RUNS = Counter("hindsight_trainer_runs_total", "Training runs that ended, by status.", ["status"])
LAST_RUN_DURATION = Gauge(
    "hindsight_trainer_last_run_duration_seconds", "Wall time of the last run that ended."
)
ROWS_INGESTED = Counter(
    "hindsight_trainer_rows_ingested_total",
    "Events ingested, by subject; written=false when the row was already as new.",
    ["subject", "written"],
)
