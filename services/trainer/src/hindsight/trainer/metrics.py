"""The trainer's own Prometheus metrics (prefix ``hindsight_trainer_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from hindsight.common.events import LABEL_SAVED, SIGNAL_FEATURES, SIGNAL_OUTCOME
from hindsight.common.metrics import init_series

__all__ = [
    "DRIFT_FEATURES_OVER",
    "DRIFT_REFERENCE",
    "DRIFT_ROWS",
    "FEATURE_MISSING_SHARE",
    "FEATURE_OUT_OF_RANGE_SHARE",
    "FEATURE_PSI",
    "FEATURE_REFERENCE_MISSING_SHARE",
    "LAST_RUN_DURATION",
    "ROWS_INGESTED",
    "RUNS",
    "SCHEMA_CHECKS",
]

RUNS = Counter("hindsight_trainer_runs_total", "Training runs that ended, by status.", ["status"])
# At 0 from import: the first failed run after a restart moves increase() (the alert).
init_series(RUNS, ("completed", "failed", "skipped"))
LAST_RUN_DURATION = Gauge(
    "hindsight_trainer_last_run_duration_seconds", "Wall time of the last run that ended."
)
ROWS_INGESTED = Counter(
    "hindsight_trainer_rows_ingested_total",
    "Events ingested, by subject; written=false when the row was already as new.",
    ["subject", "written"],
)
init_series(ROWS_INGESTED, (SIGNAL_FEATURES, SIGNAL_OUTCOME, LABEL_SAVED), ("true", "false"))

# Live drift of signal.features against the production model's reference (drift.py).
FEATURE_PSI = Gauge(
    "hindsight_trainer_feature_psi",
    "PSI of a feature over the last HINDSIGHT_TRAINER_DRIFT_WINDOW live signals against the "
    "production model's training reference (NaN until DRIFT_MIN_ROWS signals).",
    ["model", "feature"],
)
FEATURE_MISSING_SHARE = Gauge(
    "hindsight_trainer_feature_missing_share",
    "Share of live signals in the window where the feature is absent or null.",
    ["model", "feature"],
)
FEATURE_REFERENCE_MISSING_SHARE = Gauge(
    "hindsight_trainer_feature_reference_missing_share",
    "Share of training rows where the feature was missing (the baseline of missing_share).",
    ["model", "feature"],
)
FEATURE_OUT_OF_RANGE_SHARE = Gauge(
    "hindsight_trainer_feature_out_of_range_share",
    "Share of live signals in the window with the feature outside the training [min, max].",
    ["model", "feature"],
)
DRIFT_ROWS = Gauge(
    "hindsight_trainer_drift_window_rows", "Live signals in the drift window.", ["model"]
)
DRIFT_FEATURES_OVER = Gauge(
    "hindsight_trainer_drift_features_over_threshold",
    "Features whose live PSI is above HINDSIGHT_TRAINER_DRIFT_PSI_THRESHOLD (NaN: too few rows).",
    ["model"],
)
DRIFT_REFERENCE = Gauge(
    "hindsight_trainer_drift_reference_info",
    "1 for the production version whose reference the live drift compares against.",
    ["model", "version"],
)

SCHEMA_CHECKS = Counter(
    "hindsight_trainer_schema_checks_total",
    "signal.features events by the feature schema check: ok, rejected (dead-lettered), "
    "unknown_schema (version not registered: accepted), registry_unreachable (accepted "
    "unchecked), disabled (no registry or check off: accepted unchecked).",
    ["result"],
)
init_series(SCHEMA_CHECKS, ("ok", "rejected", "unknown_schema", "registry_unreachable", "disabled"))
