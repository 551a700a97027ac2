"""The registry's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["OUTBOX_PENDING", "PROMOTIONS", "REGISTRATIONS", "ROLLBACKS", "VERSIONS"]

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
