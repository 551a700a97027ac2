"""Prometheus metrics that every service exports the same way."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BUILD_INFO",
    "CONSUMER_ACK_PENDING",
    "CONSUMER_PENDING",
    "DLQ_MESSAGES",
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
CONSUMER_PENDING = Gauge(
    "hindsight_consumer_pending",
    "Messages of a durable consumer's stream not yet delivered to it (JetStream num_pending).",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "hindsight_consumer_ack_pending",
    "Messages delivered to a durable consumer and not yet acknowledged (num_ack_pending).",
    ["stream", "consumer"],
)
DLQ_MESSAGES = Gauge(
    "hindsight_dlq_messages",
    "Messages in the HINDSIGHT_DLQ stream per dlq.<subject> (every service reports it).",
    ["subject"],
)
