"""Prometheus metrics that every service exports the same way."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import product

from prometheus_client import Counter, Gauge, Histogram

from hindsight.common.events import SUBJECTS, dlq_subject

__all__ = [
    "BUILD_INFO",
    "CONSUME_OUTCOMES",
    "CONSUMER_ACK_PENDING",
    "CONSUMER_PENDING",
    "DLQ_MESSAGES",
    "EVENT_LOOP_LAG",
    "EVENT_LOOP_LAG_MAX",
    "DLQ_SUBJECTS",
    "EVENTS_CONSUMED",
    "EVENTS_PUBLISHED",
    "EVENT_HANDLING_SECONDS",
    "READY",
    "init_series",
]

CONSUME_OUTCOMES = ("ok", "retried", "dead_lettered")
"""The ``outcome`` values of ``hindsight_events_consumed_total``."""


def init_series(metric: Counter | Gauge, *values: Iterable[str]) -> int:
    """Create every label set of ``metric`` (the product of ``values``, one per label) at 0.

    A labelled counter has no series until its first ``inc``, so that first event shows up
    as a series that starts at 1 and ``increase()`` misses it; once exported at 0, the
    first event is an increase of 1. Use it for labels whose values are a known finite
    set. Returns how many label sets there are.
    """
    combos = list(product(*(tuple(v) for v in values)))
    for combo in combos:
        metric.labels(*combo)
    return len(combos)


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
DLQ_SUBJECTS = tuple(dlq_subject(subject) for subject in SUBJECTS)
# Every dlq.<subject> reads 0 from the start ("No data" would hide a quiet, healthy DLQ).
init_series(DLQ_MESSAGES, DLQ_SUBJECTS)
EVENT_LOOP_LAG = Histogram(
    "hindsight_event_loop_lag_seconds",
    "How late the event loop woke a task that slept a fixed interval: time during which "
    "no gRPC/HTTP handler could run (a starved loop shows here before callers time out).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENT_LOOP_LAG_MAX = Gauge(
    "hindsight_event_loop_lag_max_seconds",
    "Largest event-loop lag seen over the last 10 to 20 seconds (see "
    "hindsight_event_loop_lag_seconds).",
)
