"""The gRPC ``Scoring`` servicer: protobuf in, domain, protobuf out.

Errors are :mod:`hindsight.common.errors`; the shared interceptor maps them to status
codes. Nothing here awaits between filling a model's input row and running it.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from hindsight.common.errors import HindsightError, InvalidInputError, UnavailableError
from hindsight.scorer.domain.models import ModelStore
from hindsight.scorer.domain.scoring import BatchItem, Score, score_batch, score_one
from hindsight.scorer.messaging import PredictionLog
from hindsight.scorer.metrics import REQUESTS, SCORE_SECONDS
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

__all__ = ["LOGGED_BY_HEADER", "SERVICE_NAME", "ScoringServicer"]

SERVICE_NAME = "hindsight.scoring.v1.Scoring"
LOGGED_BY_HEADER = "x-hindsight-logged-by"
SIDES = frozenset({"buy", "sell", "hold"})

_CODE_BY_ERROR = (
    (InvalidInputError, "INVALID_ARGUMENT"),
    (UnavailableError, "UNAVAILABLE"),
    (HindsightError, "INTERNAL"),
)


def _code(exc: BaseException) -> str:
    return next((code for cls, code in _CODE_BY_ERROR if isinstance(exc, cls)), "INTERNAL")


def _logged_by_gateway(context: grpc.aio.ServicerContext) -> bool:
    for key, value in context.invocation_metadata() or ():
        if key == LOGGED_BY_HEADER:
            return bool(value == "gateway")
    return False


def _check_request(request: Any, prefix: str = "") -> None:
    if not request.signal_id:
        raise InvalidInputError("must not be empty", field=f"{prefix}signal_id")
    if request.side not in SIDES:
        raise InvalidInputError("must be one of buy, sell, hold", field=f"{prefix}side")


def _response(
    request: Any, score: Score, version: str, elapsed_ms: float
) -> scoring_pb2.ScoreResponse:
    return scoring_pb2.ScoreResponse(
        signal_id=request.signal_id,
        p_success=score.p_success,
        p_failure=1.0 - score.p_success,
        ci_low=score.ci_low,
        ci_high=score.ci_high,
        contributions=score.contributions,
        model_version=version,
        prediction_time_ms=elapsed_ms,
    )


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """Implements ``Score`` and ``ScoreBatch`` on the loaded models."""

    def __init__(self, store: ModelStore, log: PredictionLog | None) -> None:
        self._store = store
        self._log = log
        self._score_ok = REQUESTS.labels("Score", "OK")
        self._latency: dict[tuple[str, str], Any] = {}

    async def Score(  # noqa: N802  (gRPC method name)
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ScoreResponse:
        """Score one signal."""
        started = time.perf_counter()
        try:
            _check_request(request)
            model = self._store.resolve(request.model_name or None, request.model_version or None)
            score = score_one(model, request.features, explain=request.explain)
        except Exception as exc:
            REQUESTS.labels("Score", _code(exc)).inc()
            raise
        elapsed = time.perf_counter() - started
        self._latency_of(model.name, model.version).observe(elapsed)
        self._score_ok.inc()
        elapsed_ms = elapsed * 1000.0
        if self._log is not None and not _logged_by_gateway(context):
            self._log.record(request.signal_id, model.version, score.p_success, elapsed_ms)
        return _response(request, score, model.version, elapsed_ms)

    async def ScoreBatch(  # noqa: N802  (gRPC method name)
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ScoreBatchResponse:
        """Score several signals; one invalid request fails the whole call."""
        started = time.perf_counter()
        try:
            items = self._resolve_batch(request.requests)
            scores = score_batch(items)
        except Exception as exc:
            REQUESTS.labels("ScoreBatch", _code(exc)).inc()
            raise
        elapsed = time.perf_counter() - started
        REQUESTS.labels("ScoreBatch", "OK").inc()
        elapsed_ms = elapsed * 1000.0
        per_row_ms = elapsed_ms / max(1, len(items))
        log = None if self._log is None or _logged_by_gateway(context) else self._log
        answer = scoring_pb2.ScoreBatchResponse()
        add = answer.responses.add
        for one, item, score in zip(request.requests, items, scores, strict=True):
            version = item.model.version
            add(
                signal_id=one.signal_id,
                p_success=score.p_success,
                p_failure=1.0 - score.p_success,
                ci_low=score.ci_low,
                ci_high=score.ci_high,
                contributions=score.contributions,
                model_version=version,
                prediction_time_ms=elapsed_ms,
            )
            if log is not None:
                log.record(one.signal_id, version, score.p_success, per_row_ms)
        for name, version in {(item.model.name, item.model.version) for item in items}:
            self._latency_of(name, version).observe(elapsed)
        return answer

    def _latency_of(self, name: str, version: str) -> Any:
        child = self._latency.get((name, version))
        if child is None:
            child = self._latency[(name, version)] = SCORE_SECONDS.labels(name, version)
        return child

    def _resolve_batch(self, requests: Any) -> list[BatchItem]:
        """Check every request and find its model (resolved once per name/version pair)."""
        items = []
        resolved: dict[tuple[str, str], Any] = {}
        for i, one in enumerate(requests):
            if not one.signal_id or one.side not in SIDES:
                _check_request(one, f"requests[{i}].")
            key = (one.model_name, one.model_version)
            model = resolved.get(key)
            if model is None:
                try:
                    model = self._store.resolve(key[0] or None, key[1] or None)
                except InvalidInputError as exc:
                    raise InvalidInputError(exc.reason, field=f"requests[{i}].{exc.field}") from exc
                resolved[key] = model
            items.append(BatchItem(model, one.features, one.explain))
        return items
