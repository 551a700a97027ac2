"""The scorer's answering policy, one object for every scoring RPC (kserve's ``DataPlane``).

``Predict`` / ``PredictBatch`` (model families) are answered by
:class:`~hindsight.scorer.family_plane.FamilyPlane`, which the data plane holds.

:class:`DataPlane` takes a protobuf request and whether the caller logs the answer itself
(the gateway does), and returns the protobuf answer: the request limits of
:mod:`hindsight.common.limits` first (as the gateway checks them; no message quotes a
caller's string untruncated), the model resolved, scored in the domain, counted, logged.
Errors are :mod:`hindsight.common.errors`; the shared gRPC interceptor maps them to status
codes. Nothing here awaits between filling a model's input row and running it. The gRPC
servicer (:mod:`hindsight.scorer.grpc_api`) only converts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from hindsight.common.errors import InvalidInputError
from hindsight.common.family import DEFAULT_FAMILY
from hindsight.common.limits import SIDES, check_batch_limits, check_request, check_score_request
from hindsight.scorer.domain.families import FamilyStore
from hindsight.scorer.domain.models import LoadedModel, ModelStore
from hindsight.scorer.domain.scoring import (
    BatchScores,
    Score,
    score_columns,
    score_one,
    score_packed,
)
from hindsight.scorer.family_plane import FamilyPlane
from hindsight.scorer.messaging import PredictionLog
from hindsight.scorer.metrics import REQUESTS, SCORE_SECONDS, status_code
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

__all__ = ["DataPlane"]

# Field readers for whole batches: map() over a repeated field runs without bytecode per row.
_SIGNAL_ID = attrgetter("signal_id")
_SIDE = attrgetter("side")
_MODEL_NAME = attrgetter("model_name")
_MODEL_VERSION = attrgetter("model_version")
_FEATURES = attrgetter("features")
_VALUES = attrgetter("feature_values")
_EXPLAIN = attrgetter("explain")

_code = status_code


def _no_packed_values(requests: Sequence[ScoreRequest]) -> None:
    """A map batch (no ``feature_names``): no request may carry ``feature_values``."""
    if any(map(len, map(_VALUES, requests))):
        i = next(i for i, one in enumerate(requests) if one.feature_values)
        raise InvalidInputError(
            "set in a batch without feature_names", field=f"requests[{i}].feature_values"
        )


def _response(
    request: ScoreRequest, score: Score, version: str, elapsed_ms: float
) -> ScoreResponse:
    return ScoreResponse(
        signal_id=request.signal_id,
        p_success=score.p_success,
        p_failure=1.0 - score.p_success,
        ci_low=score.ci_low,
        ci_high=score.ci_high,
        contributions=score.contributions,
        model_version=version,
        prediction_time_ms=elapsed_ms,
    )


def _batch_response(
    signal_ids: list[str], scores: BatchScores, versions: list[str], elapsed_ms: float
) -> ScoreBatchResponse:
    """One ScoreResponse per row, in order (fields set one by one: cheaper than kwargs)."""
    answer = ScoreBatchResponse()
    add = answer.responses.add
    for signal_id, p, low, high, contributions, version in zip(
        signal_ids,
        scores.p_success,
        scores.ci_low,
        scores.ci_high,
        scores.contributions,
        versions,
        strict=True,
    ):
        one = add()
        one.signal_id = signal_id
        one.p_success = p
        one.p_failure = 1.0 - p
        one.ci_low = low
        one.ci_high = high
        if contributions is not None:
            one.contributions.update(contributions)
        one.model_version = version
        one.prediction_time_ms = elapsed_ms
    return answer


class DataPlane:
    """Answers ``Score`` / ``ScoreBatch`` with the loaded models and ``Predict`` /
    ``PredictBatch`` with the loaded family releases (:class:`FamilyPlane`)."""

    def __init__(
        self,
        store: ModelStore,
        log: PredictionLog | None,
        *,
        families: FamilyStore | None = None,
    ) -> None:
        self._store = store
        self._log = log
        self._families = FamilyPlane(
            families if families is not None else FamilyStore(default_family=DEFAULT_FAMILY),
            log,
        )
        self._score_ok = REQUESTS.labels("Score", "OK")
        self._batch_ok = REQUESTS.labels("ScoreBatch", "OK")
        self._latency: dict[tuple[str, str], Any] = {}

    def score(self, request: ScoreRequest, *, logged_upstream: bool) -> ScoreResponse:
        """Score one signal; ``logged_upstream``: the caller (the gateway) logs the answer."""
        started = time.perf_counter()
        try:
            check_score_request(request)
            model = self._store.resolve(request.model_name or None, request.model_version or None)
            score = score_one(model, request.features, explain=request.explain)
        except Exception as exc:
            REQUESTS.labels("Score", _code(exc)).inc()
            raise
        elapsed = time.perf_counter() - started
        self._latency_of(model.name, model.version).observe(elapsed)
        self._score_ok.inc()
        elapsed_ms = elapsed * 1000.0
        if self._log is not None and not logged_upstream:
            self._log.record(request.signal_id, model.version, score.p_success, elapsed_ms)
        return _response(request, score, model.version, elapsed_ms)

    def score_batch(
        self, request: ScoreBatchRequest, *, logged_upstream: bool
    ) -> ScoreBatchResponse:
        """Score several signals (map or packed form); one invalid request fails the call."""
        started = time.perf_counter()
        requests = request.requests
        try:
            check_batch_limits(request)
            signal_ids: list[str] = list(map(_SIGNAL_ID, requests))
            models = self._resolve_batch(requests, signal_ids)
            explain = list(map(_EXPLAIN, requests))
            feature_names = request.feature_names
            if feature_names:
                scores = score_packed(
                    models,
                    feature_names=feature_names,
                    values=list(map(_VALUES, requests)),
                    map_sizes=list(map(len, map(_FEATURES, requests))),
                    explain=explain,
                )
            else:
                _no_packed_values(requests)
                scores = score_columns(models, list(map(_FEATURES, requests)), explain)
        except Exception as exc:
            REQUESTS.labels("ScoreBatch", _code(exc)).inc()
            raise
        elapsed = time.perf_counter() - started
        self._batch_ok.inc()
        elapsed_ms = elapsed * 1000.0
        single = bool(models) and all(m is models[0] for m in models)
        versions = [models[0].version] * len(models) if single else [m.version for m in models]
        answer = _batch_response(signal_ids, scores, versions, elapsed_ms)
        if self._log is not None and not logged_upstream:
            per_row_ms = elapsed_ms / max(1, len(models))
            self._log.record_many(signal_ids, versions, scores.p_success, per_row_ms)
        distinct = {(m.name, m.version) for m in (models[:1] if single else models)}
        for name, version in distinct:
            self._latency_of(name, version).observe(elapsed)
        return answer

    def predict(self, request: PredictRequest, *, logged_upstream: bool) -> PredictResponse:
        """Every head of a family release for one signal."""
        return self._families.predict(request, logged_upstream=logged_upstream)

    def predict_batch(
        self, request: PredictBatchRequest, *, logged_upstream: bool
    ) -> PredictBatchResponse:
        """Every head for several signals; one invalid request fails the call."""
        return self._families.predict_batch(request, logged_upstream=logged_upstream)

    def _latency_of(self, name: str, version: str) -> Any:
        child = self._latency.get((name, version))
        if child is None:
            child = self._latency[(name, version)] = SCORE_SECONDS.labels(name, version)
        return child

    def _resolve_batch(
        self, requests: Sequence[ScoreRequest], signal_ids: list[str]
    ) -> list[LoadedModel]:
        """Check every request and find its model; errors name ``requests[i].``.

        The usual batch (every signal_id set, valid sides, one model) is checked with C
        loops and one resolve; otherwise each request is checked in order.
        """
        keys = set(zip(map(_MODEL_NAME, requests), map(_MODEL_VERSION, requests), strict=True))
        if len(keys) == 1 and all(signal_ids) and set(map(_SIDE, requests)) <= SIDES:
            name, version = keys.pop()
            try:
                only = self._store.resolve(name or None, version or None)
            except InvalidInputError:
                pass  # named with its index below
            else:
                return [only] * len(signal_ids)
        models: list[LoadedModel] = []
        resolved: dict[tuple[str, str], LoadedModel] = {}
        for i, one in enumerate(requests):
            if not one.signal_id or one.side not in SIDES:
                check_request(one, f"requests[{i}].")
            key = (one.model_name, one.model_version)
            model = resolved.get(key)
            if model is None:
                try:
                    model = self._store.resolve(key[0] or None, key[1] or None)
                except InvalidInputError as exc:
                    raise InvalidInputError(exc.reason, field=f"requests[{i}].{exc.field}") from exc
                resolved[key] = model
            models.append(model)
        return models
