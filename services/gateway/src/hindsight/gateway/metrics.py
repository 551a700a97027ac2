"""The gateway's own Prometheus metrics (prefix ``hindsight_gateway_``).

Counters whose label values are known exist at 0 from import (per scorer endpoint: from
:func:`init_endpoint_series` when the pool is built), so ``increase()`` sees their first
event.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from hindsight.common.events import AB_COMPLETED, MODEL_DEPLOYED
from hindsight.common.family import HEADS
from hindsight.common.metrics import init_series
from hindsight.gateway.domain.breaker import BreakerState
from hindsight.gateway.domain.fallback import FallbackReason

__all__ = [
    "ANSWERS",
    "BREAKER_STATE",
    "BREAKER_TRANSITIONS",
    "HEAD_FALLBACKS",
    "IN_FLIGHT",
    "PREDICTIONS_LOGGED",
    "PREDICTIONS_UNLOGGED",
    "ROUTING_EVENTS",
    "SCORE_SECONDS",
    "SHADOW_CALLS",
    "UPSTREAM_CALLS",
    "init_endpoint_series",
]

ANSWERS = Counter(
    "hindsight_gateway_answers_total",
    "Answers given, by method, kind (model, fallback, invalid) and fallback reason.",
    ["method", "kind", "reason"],
)
SCORE_SECONDS = Histogram(
    "hindsight_gateway_score_seconds",
    "Gateway time of one call, from receiving it to answering.",
    ["method"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
HEAD_FALLBACKS = Counter(
    "hindsight_gateway_head_fallbacks_total",
    "Heads of Predict answers given by their default, by method, head and reason "
    "(the gateway's fallbacks and a scorer's answers that lack a head).",
    ["method", "head", "reason"],
)
UPSTREAM_CALLS = Counter(
    "hindsight_gateway_upstream_calls_total",
    "Calls to scorer endpoints, by endpoint and gRPC status code.",
    ["endpoint", "code"],
)
BREAKER_STATE = Gauge(
    "hindsight_gateway_breaker_state",
    "Circuit breaker state per scorer endpoint: 0 closed, 1 open, 2 half-open.",
    ["endpoint"],
)
BREAKER_TRANSITIONS = Counter(
    "hindsight_gateway_breaker_transitions_total",
    "Circuit breaker state changes per endpoint.",
    ["endpoint", "from_state", "to_state"],
)
IN_FLIGHT = Gauge("hindsight_gateway_in_flight", "Calls being answered now (bulkhead).")
SHADOW_CALLS = Counter(
    "hindsight_gateway_shadow_calls_total",
    "Shadow scorings, by outcome (ok, failed, skipped).",
    ["outcome"],
)
ROUTING_EVENTS = Counter(
    "hindsight_gateway_routing_events_total",
    "model.deployed / ab.completed events folded into the routing table.",
    ["subject"],
)
PREDICTIONS_LOGGED = Counter(
    "hindsight_gateway_predictions_logged_total", "prediction.logged events published."
)
PREDICTIONS_UNLOGGED = Counter(
    "hindsight_gateway_predictions_unlogged_total",
    "Answers that could not be logged, by reason (queue_full, publish_failed, shutdown).",
    ["reason"],
)

_METHODS = ("Score", "ScoreBatch", "Predict", "PredictBatch")
_REASONS = [reason.value for reason in FallbackReason]
init_series(ANSWERS, _METHODS, ("model", "invalid"), [""])
init_series(ANSWERS, _METHODS, ["fallback"], _REASONS)
for _method in _METHODS:
    SCORE_SECONDS.labels(_method)
init_series(HEAD_FALLBACKS, ("Predict", "PredictBatch"), HEADS, _REASONS)
init_series(SHADOW_CALLS, ("ok", "failed", "skipped"))
init_series(ROUTING_EVENTS, (MODEL_DEPLOYED, AB_COMPLETED))
init_series(PREDICTIONS_UNLOGGED, ("queue_full", "publish_failed", "shutdown"))

_CLOSED, _OPEN, _HALF_OPEN = (s.name.lower() for s in BreakerState)
_TRANSITIONS = ((_CLOSED, _OPEN), (_OPEN, _HALF_OPEN), (_HALF_OPEN, _CLOSED), (_HALF_OPEN, _OPEN))


def init_endpoint_series(endpoint: str) -> None:
    """A scorer endpoint's breaker reads closed and its transitions and OK calls 0."""
    BREAKER_STATE.labels(endpoint).set(int(BreakerState.CLOSED))
    for before, after in _TRANSITIONS:
        BREAKER_TRANSITIONS.labels(endpoint, before, after)
    UPSTREAM_CALLS.labels(endpoint, "OK")
