"""The labeling service's Prometheus metrics (names fixed by the common brief)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from hindsight.common.metrics import init_series

__all__ = [
    "AGREEMENT_RATIO",
    "LABELS_TOTAL",
    "LABEL_WRITE_FAILURES",
    "LOGIN_FAILURES",
    "QUEUE_ITEMS",
    "REQUEST_SECONDS",
]

LABELS_TOTAL = Counter(
    "hindsight_labeling_labels_total", "Labels saved (undo included), by label.", ["label"]
)
AGREEMENT_RATIO = Gauge(
    "hindsight_labeling_agreement_ratio",
    "Share of current labels that agree with the LLM suggestion (trades with one).",
)
QUEUE_ITEMS = Gauge("hindsight_labeling_queue_items", "Queue items by status.", ["status"])
REQUEST_SECONDS = Histogram(
    "hindsight_labeling_request_seconds",
    "HTTP request time by route template.",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LABEL_WRITE_FAILURES = Counter(
    "hindsight_labeling_label_write_failures_total",
    "Label saves refused because labels/{trade_id}_label.json could not be written.",
)
LOGIN_FAILURES = Counter(
    "hindsight_labeling_login_failures_total",
    "Refused sign-ins: credentials (wrong name or password), throttled (locked), csrf.",
    ["reason"],
)
# Exported at 0 from the start, so rate() and increase() see the first event.
init_series(LOGIN_FAILURES, ("credentials", "throttled", "csrf"))
init_series(LABELS_TOTAL, ("approved", "rejected", "review"))
