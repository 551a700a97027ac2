"""The registry's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "DEGRADATION_ROLLBACKS",
    "EXPERIMENTS_ENDED",
    "EXPERIMENTS_STARTED",
    "OUTBOX_PENDING",
    "PREDICTIONS_DUPLICATE",
    "PREDICTIONS_INGESTED",
    "PREDICTION_BATCH_SIZE",
    "PROMOTIONS",
    "REGISTRATIONS",
    "ROLLBACKS",
    "ROLLING_BRIER",
    "ROLLING_WIN_RATE",
    "VERSIONS",
]

VERSIONS = Gauge(
    "hindsight_registry_versions",
    "Model versions by stage (refreshed by the outbox relay loop).",
    ["model_name", "stage"],
)
PROMOTIONS = Counter(
    "hindsight_registry_promotions_total",
    "Versions moved to production, by how (auto, api, forced).",
    ["model_name", "mode"],
)
ROLLBACKS = Counter(
    "hindsight_registry_rollbacks_total", "Rollbacks to the previous production.", ["model_name"]
)
REGISTRATIONS = Counter(
    "hindsight_registry_registrations_total",
    "training.completed events handled, by outcome (candidate, staging, production, "
    "refused, duplicate, run_only).",
    ["outcome"],
)
OUTBOX_PENDING = Gauge(
    "hindsight_registry_outbox_pending", "Outbox events committed but not yet published."
)
EXPERIMENTS_STARTED = Counter(
    "hindsight_registry_experiments_started_total",
    "Experiments started, by kind.",
    ["model_name", "kind"],
)
EXPERIMENTS_ENDED = Counter(
    "hindsight_registry_experiments_ended_total",
    "Experiments ended, by decision (promote, keep, inconclusive, cancelled).",
    ["model_name", "decision"],
)
DEGRADATION_ROLLBACKS = Counter(
    "hindsight_registry_degradation_rollbacks_total",
    "Production versions rolled back by the degradation monitor.",
    ["model_name"],
)
ROLLING_WIN_RATE = Gauge(
    "hindsight_registry_rolling_win_rate",
    "Production's win rate over its last N outcomes (degradation monitor).",
    ["model_name", "version"],
)
ROLLING_BRIER = Gauge(
    "hindsight_registry_rolling_brier",
    "Production's Brier score over its last N outcomes (degradation monitor).",
    ["model_name", "version"],
)
PREDICTIONS_INGESTED = Counter(
    "hindsight_registry_predictions_ingested_total",
    "prediction.logged events stored (new prediction_id).",
)
PREDICTIONS_DUPLICATE = Counter(
    "hindsight_registry_predictions_duplicate_total",
    "prediction.logged events whose prediction_id was stored already (redelivery, replay).",
)
PREDICTION_BATCH_SIZE = Histogram(
    "hindsight_registry_prediction_batch_size",
    "Valid prediction.logged events per batch write (one INSERT each).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
