"""The gateway's answering policy, one object for every scoring RPC (kserve's ``DataPlane``).

:class:`DataPlane` takes a checked protobuf request and the caller's remaining time and
returns the answer: validate what needs no model, take a bulkhead slot, plan the budget,
route (experiments, version pinning), forward to the scorer pool, fall back with a reason,
record the answer once, submit shadows. The gRPC servicer (:mod:`hindsight.gateway.grpc_api`)
only converts between gRPC and this object.

A valid request always gets an answer: the scorer's, or a fallback with its reason.
Invalid input raises :class:`~hindsight.common.errors.InvalidInputError` (decided here,
before any scorer is called: the request limits of :mod:`hindsight.common.limits`,
empty ``signal_id``, unknown ``side``; in a packed batch, a duplicate in
``feature_names``, a row's ``feature_values`` length, both forms in a row), or
:class:`RelayedInvalid` carrying a scorer's INVALID_ARGUMENT message unchanged (only the
model knows its feature set). Packed batches are forwarded unchanged.

``Predict`` / ``PredictBatch`` (a model family: every head for one signal) take the same
path with the same breakers, budget and bulkhead: routing is per family (a family is a
``model_name`` of the routing table, its releases the versions, pinned as
``family_version``); a fallback answers every head with its default
(:class:`~hindsight.gateway.domain.heads.HeadDefaults`) and a head a scorer's answer lacks
gets its default alone (:mod:`hindsight.gateway.predict`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from hindsight.common.errors import InvalidInputError
from hindsight.common.family import DEFAULT_FAMILY, HEADS
from hindsight.common.limits import (
    SIDES,
    check_batch_limits,
    check_request,
    check_score_request,
    truncated,
)
from hindsight.gateway.domain.fallback import Budget, FallbackReason
from hindsight.gateway.domain.heads import HeadDefaults
from hindsight.gateway.domain.routing import NO_EXPERIMENT, Route, RoutingTable
from hindsight.gateway.messaging import Record, Recorder
from hindsight.gateway.metrics import ANSWERS, HEAD_FALLBACKS, IN_FLIGHT, SCORE_SECONDS
from hindsight.gateway.predict import (
    check_predict_batch,
    check_predict_request,
    complete,
    fill_fallback,
    forwarded,
    logged_as,
)
from hindsight.gateway.shadow import ShadowScorer
from hindsight.gateway.upstream import ScorerPool, UpstreamResult
from hindsight.scoring.v1.scoring_pb2 import (
    PredictBatchRequest,
    PredictBatchResponse,
    PredictRequest,
    PredictResponse,
    ScoreBatchRequest,
    ScoreBatchResponse,
    ScoreRequest,
    ScoreResponse,
)

__all__ = ["DataPlane", "GatewayPolicy", "RelayedInvalid"]

logger = logging.getLogger(__name__)

# Field readers for whole batches: map() over a repeated field runs without bytecode per row.
_SIGNAL_ID = attrgetter("signal_id")
_SIDE = attrgetter("side")
_FEATURES = attrgetter("features")
_VALUES = attrgetter("feature_values")


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    """The knobs of the answering policy (from the settings)."""

    default_model: str = "trade_success"
    default_deadline_s: float = 0.100
    margin_s: float = 0.005
    margin_ratio: float = 0.1
    fallback_p_success: float = 0.0
    max_in_flight: int = 256
    default_family: str = DEFAULT_FAMILY
    head_defaults: HeadDefaults = HeadDefaults()


class RelayedInvalid(Exception):  # noqa: N818  (a relayed status, not a failure of ours)
    """A scorer answered INVALID_ARGUMENT: its message goes back to the caller unchanged."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


def _valid_rows(requests: Sequence[ScoreRequest], width: int) -> bool:
    """The usual valid batch, checked with C loops only (no bytecode per row)."""
    if not all(map(_SIGNAL_ID, requests)) or not set(map(_SIDE, requests)) <= SIDES:
        return False
    if width:
        return not any(map(len, map(_FEATURES, requests))) and set(
            map(len, map(_VALUES, requests))
        ) <= {width}
    return not any(map(len, map(_VALUES, requests)))


def check_batch(request: ScoreBatchRequest) -> None:
    """Each request as by ``Score``, plus the packed form's shape (no model needed).

    In the scorer's order, so that the gateway names the same field as a scorer would:
    the limits first, every row's own fields, then ``feature_names``, then each row's
    packed shape.
    """
    check_batch_limits(request)
    names = request.feature_names
    width = len(names)
    rows_valid = _valid_rows(request.requests, width)
    if not rows_valid:
        for i, one in enumerate(request.requests):
            check_request(one, f"requests[{i}].")
    if width and len(set(names)) != width:
        duplicate = next(name for k, name in enumerate(names) if name in names[:k])
        raise InvalidInputError(f"duplicate name {truncated(duplicate)!r}", field="feature_names")
    if rows_valid:
        return
    for i, one in enumerate(request.requests):
        prefix = f"requests[{i}]."
        if width:
            if one.features:
                raise InvalidInputError(
                    "set in a batch with feature_names: send feature_values only",
                    field=f"{prefix}features",
                )
            if len(one.feature_values) != width:
                raise InvalidInputError(
                    f"has {len(one.feature_values)} values, feature_names has {width}",
                    field=f"{prefix}feature_values",
                )
        elif one.feature_values:
            raise InvalidInputError(
                "set in a batch without feature_names", field=f"{prefix}feature_values"
            )


def _unpacked(request: ScoreRequest, names: Iterable[str]) -> ScoreRequest:
    """A packed batch row as a map-form request (what ``Score`` takes: shadows use it)."""
    copy = ScoreRequest()
    copy.CopyFrom(request)
    copy.ClearField("feature_values")
    copy.features.update(zip(names, request.feature_values, strict=True))
    return copy


def _pin(request: ScoreRequest, version: str) -> ScoreRequest:
    copy = ScoreRequest()
    copy.CopyFrom(request)
    copy.model_version = version
    return copy


def _about_pinned_version(details: str, field: str = "model_version") -> bool:
    # The scorer names the field first: "model_version: ..." or "requests[3].model_version: ..."
    head = details.split(":", 1)[0]
    return head == field or head.endswith(f"].{field}")


class DataPlane:
    """Answers ``Score``, ``ScoreBatch``, ``Predict`` and ``PredictBatch`` requests by
    forwarding to the scorer pool."""

    def __init__(
        self,
        pool: ScorerPool,
        policy: GatewayPolicy,
        *,
        routes: Callable[[], RoutingTable],
        log: Recorder | None = None,
        shadow: ShadowScorer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._policy = policy
        self._routes = routes
        self._log = log
        self._shadow = shadow
        self._clock = clock
        self.in_flight = 0
        self._model_answers = ANSWERS.labels("Score", "model", "")
        self._latency = SCORE_SECONDS.labels("Score")
        self._batch_latency = SCORE_SECONDS.labels("ScoreBatch")

    # --- Score -----------------------------------------------------------------------

    async def score(self, request: ScoreRequest, caller_remaining_s: float | None) -> ScoreResponse:
        """Score one signal: the scorer's answer, or a fallback; never an error if valid."""
        started = self._clock()
        check_score_request(request)
        if self.in_flight >= self._policy.max_in_flight:
            overloaded = self._fallback(request, FallbackReason.OVERLOADED, started)
            self._record(request, overloaded, NO_EXPERIMENT)
            return overloaded
        route = self._route(request)
        forwarded = _pin(request, route.model_version) if route.model_version else request
        result = await self._forward("Score", forwarded, started, caller_remaining_s)
        if result.invalid is not None and route.model_version:
            if _about_pinned_version(result.invalid):
                # The candidate is not loaded (yet, or any more): production answers.
                logger.warning("candidate not loaded: %s", result.invalid)
                route = Route(shadows=route.shadows)
                result = await self._forward("Score", request, started, caller_remaining_s)
        if result.invalid is not None:
            ANSWERS.labels("Score", "invalid", "").inc()
            raise RelayedInvalid(result.invalid)
        if result.response is not None:
            response: ScoreResponse = result.response
            response.arm = route.arm
            response.prediction_time_ms = (self._clock() - started) * 1000.0
            self._model_answers.inc()
        else:
            assert result.reason is not None
            response = self._fallback(request, result.reason, started)
        self._latency.observe(self._clock() - started)
        self._record(request, response, route)
        if route.shadows and self._shadow is not None:
            self._shadow.submit(request, route.shadows)
        return response

    # --- ScoreBatch ------------------------------------------------------------------

    async def score_batch(
        self, request: ScoreBatchRequest, caller_remaining_s: float | None
    ) -> ScoreBatchResponse:
        """Forward the batch as one call (map or packed form); failures fall back per request."""
        started = self._clock()
        requests = request.requests
        check_batch(request)
        answer = ScoreBatchResponse()
        if self.in_flight >= self._policy.max_in_flight:
            return self._batch_fallback(answer, requests, FallbackReason.OVERLOADED, started)
        routes = [self._route(one) for one in requests]
        forwarded = self._pinned_batch(request, routes)
        result = await self._forward("ScoreBatch", forwarded, started, caller_remaining_s)
        if (
            result.invalid is not None
            and forwarded is not request
            and _about_pinned_version(result.invalid)
        ):
            logger.warning("a candidate is not loaded: %s", result.invalid)
            routes = [Route(shadows=r.shadows) for r in routes]
            result = await self._forward("ScoreBatch", request, started, caller_remaining_s)
        if result.invalid is not None:
            ANSWERS.labels("ScoreBatch", "invalid", "").inc()
            raise RelayedInvalid(result.invalid)
        if result.response is None or len(result.response.responses) != len(requests):
            reason = result.reason or FallbackReason.UNAVAILABLE
            return self._batch_fallback(answer, requests, reason, started, routes)
        elapsed_ms = (self._clock() - started) * 1000.0
        ANSWERS.labels("ScoreBatch", "model", "").inc(len(requests))
        names = request.feature_names
        batch: ScoreBatchResponse = result.response
        for one, response, route in zip(requests, batch.responses, routes, strict=True):
            response.arm = route.arm
            response.prediction_time_ms = elapsed_ms
            self._record(one, response, route)
            if route.shadows and self._shadow is not None:
                self._shadow.submit(_unpacked(one, names) if names else one, route.shadows)
        self._batch_latency.observe(self._clock() - started)
        return batch

    # --- Predict ---------------------------------------------------------------------

    async def predict(
        self, request: PredictRequest, caller_remaining_s: float | None
    ) -> PredictResponse:
        """Every head for one signal: the scorer's answer (a head it lacks gets its
        default), or every head's default; never an error if valid."""
        started = self._clock()
        check_predict_request(request)
        family = request.family or self._policy.default_family
        if self.in_flight >= self._policy.max_in_flight:
            return self._predict_fallback(request, family, FallbackReason.OVERLOADED, started)
        route = self._family_route(request, family)
        result = await self._forward(
            "Predict",
            forwarded(request, family=family, version=route.model_version),
            started,
            caller_remaining_s,
        )
        if (
            result.invalid is not None
            and route.model_version
            and _about_pinned_version(result.invalid, "family_version")
        ):
            logger.warning("family release not loaded: %s", result.invalid)
            route = Route(shadows=route.shadows)
            result = await self._forward(
                "Predict",
                forwarded(request, family=family, version=None),
                started,
                caller_remaining_s,
            )
        if result.invalid is not None and self._deployed_not_loaded(result.invalid, [family]):
            logger.warning("family %s is deployed but not loaded yet: %s", family, result.invalid)
            return self._predict_fallback(request, family, FallbackReason.NO_MODEL, started, route)
        if result.invalid is not None:
            ANSWERS.labels("Predict", "invalid", "").inc()
            raise RelayedInvalid(result.invalid)
        if result.response is None:
            assert result.reason is not None
            return self._predict_fallback(request, family, result.reason, started, route)
        response: PredictResponse = result.response
        self._complete("Predict", response)
        response.arm = route.arm
        response.prediction_time_ms = (self._clock() - started) * 1000.0
        ANSWERS.labels("Predict", "model", "").inc()
        SCORE_SECONDS.labels("Predict").observe(self._clock() - started)
        self._record_predict(request, response, route, family)
        if route.shadows and self._shadow is not None:
            self._shadow.submit(
                forwarded(request, family=family, version=None), route.shadows, model_name=family
            )
        return response

    async def predict_batch(
        self, request: PredictBatchRequest, caller_remaining_s: float | None
    ) -> PredictBatchResponse:
        """Forward the batch as one call; failures give every head its default, per request."""
        started = self._clock()
        requests = request.requests
        check_predict_batch(request)
        default_family = self._policy.default_family
        families = [one.family or default_family for one in requests]
        answer = PredictBatchResponse()
        if self.in_flight >= self._policy.max_in_flight:
            return self._predict_batch_fallback(
                answer, requests, families, FallbackReason.OVERLOADED, started
            )
        routes = [
            self._family_route(one, family) for one, family in zip(requests, families, strict=True)
        ]
        batch = self._forwarded_batch(request, families, routes)
        result = await self._forward("PredictBatch", batch, started, caller_remaining_s)
        if (
            result.invalid is not None
            and any(r.model_version for r in routes)
            and _about_pinned_version(result.invalid, "family_version")
        ):
            logger.warning("a family release is not loaded: %s", result.invalid)
            routes = [Route(shadows=r.shadows) for r in routes]
            batch = self._forwarded_batch(request, families, routes)
            result = await self._forward("PredictBatch", batch, started, caller_remaining_s)
        if result.invalid is not None and self._deployed_not_loaded(result.invalid, families):
            logger.warning("a deployed family is not loaded yet: %s", result.invalid)
            return self._predict_batch_fallback(
                answer, requests, families, FallbackReason.NO_MODEL, started, routes
            )
        if result.invalid is not None:
            ANSWERS.labels("PredictBatch", "invalid", "").inc()
            raise RelayedInvalid(result.invalid)
        if result.response is None or len(result.response.responses) != len(requests):
            reason = result.reason or FallbackReason.UNAVAILABLE
            return self._predict_batch_fallback(answer, requests, families, reason, started, routes)
        elapsed_ms = (self._clock() - started) * 1000.0
        ANSWERS.labels("PredictBatch", "model", "").inc(len(requests))
        answered: PredictBatchResponse = result.response
        rows = zip(requests, answered.responses, routes, families, strict=True)
        for one, response, route, family in rows:
            self._complete("PredictBatch", response)
            response.arm = route.arm
            response.prediction_time_ms = elapsed_ms
            self._record_predict(one, response, route, family)
            if route.shadows and self._shadow is not None:
                self._shadow.submit(
                    forwarded(one, family=family, version=None), route.shadows, model_name=family
                )
        SCORE_SECONDS.labels("PredictBatch").observe(self._clock() - started)
        return answered

    def _deployed_not_loaded(self, invalid: str, families: list[str]) -> bool:
        """A scorer said "unknown family" for a family the registry has deployed (in the
        routing table): the scorer has not loaded it yet, which is no caller's mistake, so
        the answer is the heads' defaults (``no_model``), not an error. A family nobody
        deployed stays INVALID_ARGUMENT."""
        if not _about_pinned_version(invalid, "family"):
            return False
        routes = self._routes()
        return all(routes.production(family) is not None for family in set(families))

    def _family_route(self, request: PredictRequest, family: str) -> Route:
        if request.family_version:
            return NO_EXPERIMENT  # pinned by the caller
        return self._routes().route(family, request.signal_id)

    @staticmethod
    def _forwarded_batch(
        request: PredictBatchRequest, families: list[str], routes: list[Route]
    ) -> PredictBatchRequest:
        rows = [
            forwarded(one, family=family, version=route.model_version)
            for one, family, route in zip(request.requests, families, routes, strict=True)
        ]
        if all(row is one for row, one in zip(rows, request.requests, strict=True)):
            return request
        return PredictBatchRequest(requests=rows)

    def _complete(self, method: str, response: PredictResponse) -> None:
        for head in complete(response, self._policy.head_defaults):
            HEAD_FALLBACKS.labels(method, head, FallbackReason.NO_MODEL.value).inc()

    def _predict_fallback(
        self,
        request: PredictRequest,
        family: str,
        reason: FallbackReason,
        started: float,
        route: Route = NO_EXPERIMENT,
    ) -> PredictResponse:
        response = fill_fallback(
            PredictResponse(),
            request,
            family=family,
            reason=reason,
            defaults=self._policy.head_defaults,
            elapsed_ms=(self._clock() - started) * 1000.0,
        )
        ANSWERS.labels("Predict", "fallback", reason.value).inc()
        for head in response.heads:
            HEAD_FALLBACKS.labels("Predict", head, reason.value).inc()
        SCORE_SECONDS.labels("Predict").observe(self._clock() - started)
        self._record_predict(request, response, route, family)
        return response

    def _predict_batch_fallback(
        self,
        answer: PredictBatchResponse,
        requests: Sequence[PredictRequest],
        families: list[str],
        reason: FallbackReason,
        started: float,
        routes: list[Route] | None = None,
    ) -> PredictBatchResponse:
        elapsed_ms = (self._clock() - started) * 1000.0
        defaults = self._policy.head_defaults
        for i, (one, family) in enumerate(zip(requests, families, strict=True)):
            response = fill_fallback(
                answer.responses.add(),
                one,
                family=family,
                reason=reason,
                defaults=defaults,
                elapsed_ms=elapsed_ms,
            )
            self._record_predict(one, response, routes[i] if routes else NO_EXPERIMENT, family)
        n = len(answer.responses)
        ANSWERS.labels("PredictBatch", "fallback", reason.value).inc(n)
        for head in HEADS:
            HEAD_FALLBACKS.labels("PredictBatch", head, reason.value).inc(n)
        SCORE_SECONDS.labels("PredictBatch").observe(self._clock() - started)
        return answer

    def _record_predict(
        self, request: PredictRequest, response: PredictResponse, route: Route, family: str
    ) -> None:
        log = self._log
        if log is None:
            return
        logged = logged_as(response)
        log.record(
            Record(
                signal_id=request.signal_id,
                model_version=logged.model_version,
                p_success=response.conf_pat,
                fallback=logged.fallback,
                fallback_reason=logged.fallback_reason,
                # As for Score: an answer whose logged p_success is a default is no arm's.
                experiment_id=None if logged.fallback else route.experiment_id,
                arm=None if logged.fallback else route.arm or None,
                latency_ms=response.prediction_time_ms,
                model_name=family,
            )
        )

    # --- helpers ---------------------------------------------------------------------

    async def _forward(
        self,
        method: str,
        request: ScoreRequest | ScoreBatchRequest | PredictRequest | PredictBatchRequest,
        started: float,
        caller_remaining_s: float | None,
    ) -> UpstreamResult:
        """One pool call within the caller's budget, holding a bulkhead slot."""
        policy = self._policy
        budget = Budget.plan(
            started,
            caller_remaining_s=caller_remaining_s,
            default_s=policy.default_deadline_s,
            margin_s=policy.margin_s,
            margin_ratio=policy.margin_ratio,
        )
        self.in_flight += 1
        IN_FLIGHT.inc()
        try:
            return await self._pool.call(method, request, budget)
        finally:
            self.in_flight -= 1
            IN_FLIGHT.dec()

    def _route(self, request: ScoreRequest) -> Route:
        if request.HasField("model_version") and request.model_version:
            return NO_EXPERIMENT  # pinned by the caller
        return self._routes().route(
            request.model_name or self._policy.default_model, request.signal_id
        )

    @staticmethod
    def _pinned_batch(request: ScoreBatchRequest, routes: list[Route]) -> ScoreBatchRequest:
        if not any(r.model_version for r in routes):
            return request
        batch = ScoreBatchRequest(feature_names=request.feature_names)
        batch.requests.extend(
            _pin(one, r.model_version) if r.model_version else one
            for one, r in zip(request.requests, routes, strict=True)
        )
        return batch

    def _fallback(
        self, request: ScoreRequest, reason: FallbackReason, started: float
    ) -> ScoreResponse:
        p = self._policy.fallback_p_success
        ANSWERS.labels("Score", "fallback", reason.value).inc()
        return ScoreResponse(
            signal_id=request.signal_id,
            p_success=p,
            p_failure=1.0 - p,
            ci_low=0.0,
            ci_high=1.0,
            fallback=True,
            fallback_reason=reason.value,
            prediction_time_ms=(self._clock() - started) * 1000.0,
        )

    def _batch_fallback(
        self,
        answer: ScoreBatchResponse,
        requests: Iterable[ScoreRequest],
        reason: FallbackReason,
        started: float,
        routes: list[Route] | None = None,
    ) -> ScoreBatchResponse:
        p = self._policy.fallback_p_success
        elapsed_ms = (self._clock() - started) * 1000.0
        n = 0
        for i, one in enumerate(requests):
            response = answer.responses.add(
                signal_id=one.signal_id,
                p_success=p,
                p_failure=1.0 - p,
                ci_low=0.0,
                ci_high=1.0,
                fallback=True,
                fallback_reason=reason.value,
                prediction_time_ms=elapsed_ms,
            )
            self._record(one, response, routes[i] if routes else NO_EXPERIMENT)
            n += 1
        ANSWERS.labels("ScoreBatch", "fallback", reason.value).inc(n)
        self._batch_latency.observe(self._clock() - started)
        return answer

    def _record(self, request: ScoreRequest, response: ScoreResponse, route: Route) -> None:
        log = self._log
        if log is None:
            return
        fallback = response.fallback
        log.record(
            Record(
                signal_id=request.signal_id,
                model_version=None if fallback else response.model_version or None,
                p_success=response.p_success,
                fallback=fallback,
                fallback_reason=response.fallback_reason or None,
                # A fallback is no arm's answer: it must not count in an experiment.
                experiment_id=None if fallback else route.experiment_id,
                arm=None if fallback else route.arm or None,
                latency_ms=response.prediction_time_ms,
            )
        )
