"""The scorer's own Prometheus metrics (prefix ``hindsight_scorer_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from hindsight.common.errors import HindsightError, InvalidInputError, UnavailableError
from hindsight.common.metrics import init_series

__all__ = [
    "DRIFT_FEATURES_OVER",
    "DRIFT_MAX_PSI",
    "DRIFT_ROWS",
    "FAMILIES_LOADED",
    "FEATURE_PSI",
    "LOAD_FAILURES",
    "MODELS_LOADED",
    "PREDICTIONS_LOGGED",
    "PREDICTIONS_UNLOGGED",
    "PREDICT_SECONDS",
    "REQUESTS",
    "SCORE_SECONDS",
    "status_code",
]

SCORE_SECONDS = Histogram(
    "hindsight_scorer_score_seconds",
    "Server time of one Score (or one ScoreBatch row group), by model and version.",
    ["model", "version"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
PREDICT_SECONDS = Histogram(
    "hindsight_scorer_predict_seconds",
    "Server time of one Predict or PredictBatch call (every head of every row), by method, "
    "family and release.",
    ["method", "family", "version"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
REQUESTS = Counter(
    "hindsight_scorer_requests_total",
    "Scoring calls answered, by method and gRPC status code.",
    ["method", "code"],
)
MODELS_LOADED = Gauge(
    "hindsight_scorer_models_loaded",
    "1 per loaded model version; labels say which and at what stage.",
    ["model", "version", "stage"],
)
FAMILIES_LOADED = Gauge(
    "hindsight_scorer_families_loaded",
    "1 per loaded family release (all its members); labels say which and at what stage.",
    ["family", "version", "stage"],
)
LOAD_FAILURES = Counter(
    "hindsight_scorer_load_failures_total",
    "Deployments (models and family releases) refused or failed to load (the previous "
    "version keeps serving).",
    ["model", "reason"],
)
PREDICTIONS_LOGGED = Counter(
    "hindsight_scorer_predictions_logged_total",
    "prediction.logged events published.",
)
PREDICTIONS_UNLOGGED = Counter(
    "hindsight_scorer_predictions_unlogged_total",
    "Predictions that could not be logged, by reason (queue_full, publish_failed, shutdown).",
    ["reason"],
)
FEATURE_PSI = Gauge(
    "hindsight_scorer_feature_psi",
    "PSI of a feature over the drift window against the card's reference distribution "
    "(NaN until HINDSIGHT_SCORER_DRIFT_MIN_ROWS rows were scored).",
    ["model", "version", "feature"],
)
DRIFT_MAX_PSI = Gauge(
    "hindsight_scorer_drift_max_psi",
    "Largest feature PSI of a model version (NaN until enough rows were scored).",
    ["model", "version"],
)
DRIFT_FEATURES_OVER = Gauge(
    "hindsight_scorer_drift_features_over_threshold",
    "Features whose PSI is above HINDSIGHT_SCORER_DRIFT_PSI_THRESHOLD.",
    ["model", "version"],
)
DRIFT_ROWS = Gauge(
    "hindsight_scorer_drift_window_rows",
    "Scored rows in a model version's drift window.",
    ["model", "version"],
)

# Known label sets at 0 from import, so increase() sees the first event.
init_series(
    REQUESTS,
    ("Score", "ScoreBatch", "Predict", "PredictBatch"),
    ("OK", "INVALID_ARGUMENT", "UNAVAILABLE", "INTERNAL"),
)
init_series(PREDICTIONS_UNLOGGED, ("queue_full", "publish_failed", "shutdown"))

_CODE_BY_ERROR = (
    (InvalidInputError, "INVALID_ARGUMENT"),
    (UnavailableError, "UNAVAILABLE"),
    (HindsightError, "INTERNAL"),
)


def status_code(exc: BaseException) -> str:
    """The gRPC status code the shared interceptor answers for ``exc`` (the ``code`` label)."""
    return next((code for cls, code in _CODE_BY_ERROR if isinstance(exc, cls)), "INTERNAL")
