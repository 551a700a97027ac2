"""The scorer endpoints: one gRPC channel and one circuit breaker each.

:meth:`ScorerPool.call` tries the endpoints whose breaker admits a call, least loaded
first (round-robin among equals), each with what is left of the budget as its gRPC
timeout, and moves on to the next endpoint only while budget remains. Every admitted
call ends in exactly one breaker record (success, failure or release). As resilience4j
counts, only the scorer's own failures and slow calls are recorded: INVALID_ARGUMENT, a
request refused for its size, a cancelled call (the caller went away) and a deadline
missed within less time than a slow call takes (the caller's own short deadline) are
released. Channels are
plaintext, or TLS (mutual with a client certificate) when the pool is given a
:class:`~hindsight.common.tls.ClientTls`; a refused handshake reads as UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import grpc

from hindsight.common.limits import truncated
from hindsight.common.tls import ClientTls
from hindsight.gateway.domain.breaker import BreakerConfig, CircuitBreaker, Transition
from hindsight.gateway.domain.fallback import (
    Attempt,
    Budget,
    FallbackReason,
    Outcome,
    fallback_reason,
    is_no_model,
)
from hindsight.gateway.metrics import (
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    UPSTREAM_CALLS,
    init_endpoint_series,
)
from hindsight.scoring.v1 import scoring_pb2_grpc

__all__ = ["LOGGED_BY", "Endpoint", "ScorerPool", "UpstreamResult", "channel_options"]

logger = logging.getLogger(__name__)

LOGGED_BY: Final = (("x-hindsight-logged-by", "gateway"),)
"""Metadata on every forwarded call: the scorer does not log what the gateway logs."""

MIN_ATTEMPT_S: Final = 0.0005
"""An attempt needs at least this much budget left to be worth starting."""

# Failures that count against an endpoint's breaker; other codes are released.
_COUNTED: Final = {
    grpc.StatusCode.UNAVAILABLE: Outcome.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Outcome.DEADLINE,
    grpc.StatusCode.INTERNAL: Outcome.ERROR,
    grpc.StatusCode.UNKNOWN: Outcome.ERROR,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Outcome.ERROR,
    grpc.StatusCode.DATA_LOSS: Outcome.ERROR,
}


_STUBS: Final = {
    "Score": "score",
    "ScoreBatch": "score_batch",
    "Predict": "predict",
    "PredictBatch": "predict_batch",
}
"""RPC name -> the :class:`Endpoint` attribute holding its stub."""

_MAX_DETAILS: Final = 1024
"""Characters of a scorer's INVALID_ARGUMENT message relayed to the caller."""


def _too_large(code: grpc.StatusCode, details: str) -> bool:
    """The scorer refused the request for its size: the request's fault, not the scorer's."""
    return code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details


def channel_options(target: str) -> list[tuple[str, Any]]:
    """Channel options: reconnect fast after a scorer restart; balance a DNS name's addresses."""
    options: list[tuple[str, Any]] = [
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.enable_retries", 0),
        # A scorer's answer is bounded by the request limits; gRPC's default 4 MiB receive
        # limit would turn a large ScoreBatch answer into a failure of a healthy scorer.
        ("grpc.max_receive_message_length", -1),
    ]
    if target.startswith("dns:"):
        options.append(("grpc.lb_policy_name", "round_robin"))
    return options


def _channel(target: str, tls: ClientTls | None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target, options=channel_options(target))
    options = channel_options(target) + tls.channel_options()
    return grpc.aio.secure_channel(target, tls.credentials(), options=options)


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """One of: a response, an INVALID_ARGUMENT to relay, or a fallback reason."""

    response: Any = None
    endpoint: str | None = None
    invalid: str | None = None
    reason: FallbackReason | None = None


@dataclass(eq=False)
class Endpoint:
    """One scorer target."""

    target: str
    breaker: CircuitBreaker
    channel: grpc.aio.Channel
    score: Any
    score_batch: Any
    predict: Any = None
    predict_batch: Any = None
    ok: Any = None
    in_flight: int = 0


def _log_transition(transition: Transition) -> None:
    before, after = transition.from_state.name.lower(), transition.to_state.name.lower()
    BREAKER_STATE.labels(transition.endpoint).set(int(transition.to_state))
    BREAKER_TRANSITIONS.labels(transition.endpoint, before, after).inc()
    logger.warning(
        "circuit breaker %s -> %s for %s: %s",
        before,
        after,
        transition.endpoint,
        transition.reason,
        extra={
            "event": "breaker_transition",
            "endpoint": transition.endpoint,
            "from": before,
            "to": after,
            "reason": transition.reason,
        },
    )


class ScorerPool:
    """The scorer endpoints with their breakers; calls them within a budget."""

    def __init__(
        self,
        targets: Sequence[str],
        breaker: BreakerConfig,
        *,
        tls: ClientTls | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._targets = list(targets)
        self._tls = tls
        self._breaker_config = breaker
        self._clock = clock
        self.endpoints: list[Endpoint] = []
        self._next = 0

    async def start(self) -> None:
        """Open one channel per endpoint (inside the serving event loop: grpc.aio channels
        belong to the loop that creates them)."""
        for target in self._targets:
            channel = _channel(target, self._tls)
            stub = scoring_pb2_grpc.ScoringStub(channel)
            self.endpoints.append(
                Endpoint(
                    target=target,
                    breaker=CircuitBreaker(
                        target,
                        self._breaker_config,
                        clock=self._clock,
                        on_transition=_log_transition,
                    ),
                    channel=channel,
                    score=stub.Score,
                    score_batch=stub.ScoreBatch,
                    predict=stub.Predict,
                    predict_batch=stub.PredictBatch,
                    ok=UPSTREAM_CALLS.labels(target, "OK"),
                )
            )
            init_endpoint_series(target)
        security = "plaintext" if self._tls is None else "mutual TLS" if self._tls.mutual else "TLS"
        logger.info("scorer channels (%s): %s", security, ", ".join(self._targets))

    async def stop(self) -> None:
        """Close every channel."""
        endpoints, self.endpoints = self.endpoints, []
        await asyncio.gather(*(e.channel.close() for e in endpoints), return_exceptions=True)

    def order(self) -> list[Endpoint]:
        """Endpoints to try: least in flight first, round-robin among equals."""
        endpoints = self.endpoints
        n = len(endpoints)
        if n == 1:
            return endpoints
        start = self._next
        self._next = (start + 1) % n
        rotated = endpoints[start:] + endpoints[:start]
        return sorted(rotated, key=lambda e: e.in_flight)  # stable: keeps the rotation

    def admitting(self) -> list[Endpoint]:
        """Endpoints whose breaker is closed (for shadow calls, which never probe)."""
        return [e for e in self.endpoints if e.breaker.state == 0]

    async def call(self, method: str, request: Any, budget: Budget) -> UpstreamResult:
        """Forward ``request`` within ``budget``: ``method`` is a ``Scoring`` RPC's name
        ("Score", "ScoreBatch", "Predict", "PredictBatch"); one breaker per endpoint for all."""
        attribute = _STUBS[method]
        attempts: list[Attempt] = []
        refused = 0
        clock = self._clock
        for endpoint in self.order():
            remaining = budget.remaining(clock())
            if remaining < MIN_ATTEMPT_S:
                break
            breaker = endpoint.breaker
            if not breaker.try_acquire():
                refused += 1
                continue
            stub = getattr(endpoint, attribute)
            endpoint.in_flight += 1
            started = clock()
            recorded = False
            # Less time than a slow call takes: a deadline missed in it is the caller's short
            # deadline, not a sign that the scorer is failing (it must not open the breaker).
            counts_deadline = remaining >= breaker.config.slow_call_s
            try:
                response = await stub(request, timeout=remaining, metadata=LOGGED_BY)
            except grpc.aio.AioRpcError as exc:
                elapsed = clock() - started
                code = exc.code()
                UPSTREAM_CALLS.labels(endpoint.target, code.name).inc()
                details = exc.details() or ""
                if code is grpc.StatusCode.INVALID_ARGUMENT or _too_large(code, details):
                    breaker.release()
                    recorded = True
                    return UpstreamResult(
                        endpoint=endpoint.target, invalid=truncated(details, _MAX_DETAILS)
                    )
                outcome = _COUNTED.get(code)
                if outcome is None or (outcome is Outcome.DEADLINE and not counts_deadline):
                    breaker.release()
                    outcome = outcome or Outcome.ERROR
                else:
                    if code is grpc.StatusCode.UNAVAILABLE and is_no_model(details):
                        outcome = Outcome.NO_MODEL
                    breaker.record_failure(elapsed)
                recorded = True
                attempts.append(Attempt(endpoint.target, outcome))
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a closed channel, a bug in a stub: the endpoint failed
                breaker.record_failure(clock() - started)
                recorded = True
                UPSTREAM_CALLS.labels(endpoint.target, "ERROR").inc()
                logger.warning("call to %s failed: %r", endpoint.target, exc)
                attempts.append(Attempt(endpoint.target, Outcome.ERROR))
                continue
            else:
                breaker.record_success(clock() - started)
                recorded = True
                endpoint.ok.inc()
                return UpstreamResult(response=response, endpoint=endpoint.target)
            finally:
                endpoint.in_flight -= 1
                if not recorded:  # cancelled by the caller: neither success nor failure
                    breaker.release()
        return UpstreamResult(
            reason=fallback_reason(
                attempts,
                refused_by_breaker=refused,
                budget_left=budget.remaining(clock()) >= MIN_ATTEMPT_S,
            )
        )
