"""The registry's own Prometheus metrics.

Counters labelled by model exist at 0 for every known model (:func:`init_model_series`,
called by the gauge refresh loop), so the first promotion, rollback or experiment after a
restart moves ``increase()``. Active experiments and the production version are gauges kept
current by the evaluator (:func:`export_experiments`, :func:`export_production`); series of
ended experiments and past versions are removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import suppress

from prometheus_client import Counter, Gauge, Histogram

from hindsight.common.metrics import init_series
from hindsight.registry.domain import (
    CONTROL,
    ArmMetrics,
    ExperimentKind,
    Stage,
    TestDecision,
    traffic,
)
from hindsight.registry.storage import ExperimentRecord, Store

__all__ = [
    "DEGRADATION_ROLLBACKS",
    "EXPERIMENT_ARM_BRIER",
    "EXPERIMENT_ARM_OUTCOMES",
    "EXPERIMENT_ARM_WIN_RATE",
    "EXPERIMENT_P_VALUE",
    "EXPERIMENT_TRAFFIC_SHARE",
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
    "export_experiments",
    "export_production",
    "init_model_series",
    "refresh_gauges",
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
PRODUCTION_VERSION = Gauge(
    "hindsight_registry_production_version_info",
    "1 for the version in production, per model (refreshed by the evaluator).",
    ["model_name", "version"],
)

_ARM = ["model_name", "experiment_id", "kind", "arm", "version"]
EXPERIMENT_TRAFFIC_SHARE = Gauge(
    "hindsight_registry_experiment_traffic_share",
    "Share of live answers an active experiment's arm gives (a shadow candidate: 0, it is "
    "scored aside).",
    _ARM,
)
EXPERIMENT_ARM_OUTCOMES = Gauge(
    "hindsight_registry_experiment_arm_outcomes",
    "Predictions of an active experiment's arm joined to an outcome (the test's n).",
    _ARM,
)
EXPERIMENT_ARM_WIN_RATE = Gauge(
    "hindsight_registry_experiment_arm_win_rate",
    "Win rate of an active experiment's arm over its joined outcomes (NaN before any).",
    _ARM,
)
EXPERIMENT_ARM_BRIER = Gauge(
    "hindsight_registry_experiment_arm_brier",
    "Brier score of an active experiment's arm over its joined outcomes (NaN before any).",
    _ARM,
)
EXPERIMENT_P_VALUE = Gauge(
    "hindsight_registry_experiment_p_value",
    "The test's p-value for an active experiment (NaN while there are too few samples).",
    ["model_name", "experiment_id", "kind"],
)

REGISTRATION_OUTCOMES = ("candidate", "staging", "production", "refused", "duplicate", "run_only")
PROMOTION_MODES = ("auto", "api", "forced", "experiment")
EXPERIMENT_DECISIONS = ("promote", "keep", "inconclusive", "cancelled")
init_series(REGISTRATIONS, REGISTRATION_OUTCOMES)


def init_model_series(model_name: str) -> None:
    """Export every per-model counter of ``model_name`` at 0 (idempotent)."""
    init_series(PROMOTIONS, [model_name], PROMOTION_MODES)
    init_series(ROLLBACKS, [model_name])
    init_series(DEGRADATION_ROLLBACKS, [model_name])
    init_series(EXPERIMENTS_STARTED, [model_name], [kind.value for kind in ExperimentKind])
    init_series(EXPERIMENTS_ENDED, [model_name], EXPERIMENT_DECISIONS)


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class _Exported:
    """Label sets a gauge family was given last time, so the stale ones can be removed."""

    def __init__(self, *gauges: Gauge) -> None:
        self.gauges = gauges
        self.labels: set[tuple[str, ...]] = set()

    def keep_only(self, current: set[tuple[str, ...]]) -> None:
        for labels in self.labels - current:
            for gauge in self.gauges:
                with suppress(KeyError):
                    gauge.remove(*labels)
        self.labels = current


_ARM_SERIES = _Exported(
    EXPERIMENT_TRAFFIC_SHARE, EXPERIMENT_ARM_OUTCOMES, EXPERIMENT_ARM_WIN_RATE, EXPERIMENT_ARM_BRIER
)
_TEST_SERIES = _Exported(EXPERIMENT_P_VALUE)
_PRODUCTION_SERIES = _Exported(PRODUCTION_VERSION)


def export_experiments(
    active: Iterable[tuple[ExperimentRecord, Mapping[str, ArmMetrics], TestDecision]],
) -> None:
    """Set the gauges of the active experiments (row, per-arm metrics, verdict); drop the rest."""
    arms: set[tuple[str, ...]] = set()
    tests: set[tuple[str, ...]] = set()
    for experiment, per_arm, verdict in active:
        name, experiment_id = experiment.model_name, experiment.experiment_id
        kind = experiment.kind.value
        control, candidate = experiment.control_version, experiment.candidate_version
        weights = traffic(control, candidate, experiment.candidate_share) or {control: 1.0}
        for arm, metrics in per_arm.items():
            version = control if arm == CONTROL else candidate
            labels = (name, experiment_id, kind, arm, version)
            EXPERIMENT_TRAFFIC_SHARE.labels(*labels).set(weights.get(version, 0.0))
            EXPERIMENT_ARM_OUTCOMES.labels(*labels).set(metrics.n)
            EXPERIMENT_ARM_WIN_RATE.labels(*labels).set(_nan(metrics.win_rate))
            EXPERIMENT_ARM_BRIER.labels(*labels).set(_nan(metrics.brier))
            arms.add(labels)
        EXPERIMENT_P_VALUE.labels(name, experiment_id, kind).set(_nan(verdict.p_value))
        tests.add((name, experiment_id, kind))
    _ARM_SERIES.keep_only(arms)
    _TEST_SERIES.keep_only(tests)


def export_production(versions: Iterable[tuple[str, str]]) -> None:
    """Set 1 for each (model, production version); drop the series of past versions."""
    current: set[tuple[str, ...]] = {(str(name), str(version)) for name, version in versions}
    for labels in current:
        PRODUCTION_VERSION.labels(*labels).set(1)
        init_model_series(labels[0])
    _PRODUCTION_SERIES.keep_only(current)


async def refresh_gauges(store: Store) -> None:
    """Versions by stage and pending outbox rows, from the database (after each relay pass)."""
    OUTBOX_PENDING.set(await store.outbox_pending())
    counts = await store.tables.versions.stage_counts()
    seen = {(c.model_name, c.stage): c.n for c in counts}
    for model in {c.model_name for c in counts}:
        init_model_series(model)  # its counters at 0 before their first event
        for stage in Stage:
            VERSIONS.labels(model, stage.value).set(seen.get((model, stage), 0))
