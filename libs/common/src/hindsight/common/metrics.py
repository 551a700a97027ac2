"""Prometheus metrics that every service exports the same way."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BUILD_INFO",
    "EVENTS_CONSUMED",
    "EVENTS_PUBLISHED",
    "EVENT_HANDLING_SECONDS",
    "READY",
]

EVENTS_PUBLISHED = Counter(
    "hindsight_events_published_total",
    "Events published to JetStream; duplicate=true when JetStream dropped a known key.",
    ["subject", "duplicate"],
)
EVENTS_CONSUMED = Counter(
    "hindsight_events_consumed_total",
    "Messages handled by a durable consumer, by outcome (ok, retried, dead_lettered).",
    ["subject", "consumer", "outcome"],
)
EVENT_HANDLING_SECONDS = Histogram(
    "hindsight_event_handling_seconds",
    "Time spent handling one message, validation included.",
    ["subject", "consumer"],
)
READY = Gauge(
    "hindsight_ready",
    "1 when the service's readiness checks all pass, else 0.",
    ["service"],
)
BUILD_INFO = Gauge(
    "hindsight_build_info",
    "Always 1; labels carry the service name and version.",
    ["service", "version"],
)
