"""Shadow scoring: the shadow version scores a copy of the request after the answer.

A ``ScoreRequest`` is pinned by ``model_version`` and sent to ``Score``; a
``PredictRequest`` (a model family) by ``family_version`` and sent to ``Predict``, its
``conf_pat`` logged as ``p_success`` with the family as ``model_name``.

Never on the request path: :meth:`ShadowScorer.submit` only starts tasks (bounded; more
are skipped and counted), each call has its own short deadline, goes only to endpoints
whose breaker is closed, and is not recorded in the breakers. A shadow score is logged
as ``prediction.logged`` with arm "shadow" and the experiment_id; it never is an answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc

from hindsight.gateway.domain.routing import ARM_SHADOW, Experiment
from hindsight.gateway.messaging import Record, Recorder
from hindsight.gateway.metrics import SHADOW_CALLS
from hindsight.gateway.predict import logged_as
from hindsight.gateway.upstream import LOGGED_BY, ScorerPool
from hindsight.scoring.v1 import scoring_pb2

__all__ = ["ShadowScorer"]

logger = logging.getLogger(__name__)


class ShadowScorer:
    """Scores shadow versions in background tasks and logs what they say."""

    def __init__(
        self,
        pool: ScorerPool,
        log: Recorder | None,
        *,
        deadline_s: float,
        max_in_flight: int,
    ) -> None:
        self._pool = pool
        self._log = log
        self._deadline_s = deadline_s
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._ok = SHADOW_CALLS.labels("ok")
        self._failed = SHADOW_CALLS.labels("failed")
        self._skipped = SHADOW_CALLS.labels("skipped")

    @property
    def in_flight(self) -> int:
        """Shadow calls running now."""
        return len(self._tasks)

    def submit(
        self,
        request: scoring_pb2.ScoreRequest | scoring_pb2.PredictRequest,
        shadows: tuple[Experiment, ...],
        *,
        model_name: str | None = None,
    ) -> None:
        """Start one background scoring per shadow experiment (or skip when full);
        ``model_name`` (a Predict's family) goes into the log."""
        for experiment in shadows:
            if len(self._tasks) >= self._max_in_flight:
                self._skipped.inc()
                continue
            task = asyncio.create_task(self._score(request, experiment, model_name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel what is still running."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _score(
        self,
        request: scoring_pb2.ScoreRequest | scoring_pb2.PredictRequest,
        experiment: Experiment,
        model_name: str | None,
    ) -> None:
        endpoints = self._pool.admitting()
        if not endpoints:
            self._skipped.inc()
            return
        endpoint = min(endpoints, key=lambda e: e.in_flight)
        call: Any
        if isinstance(request, scoring_pb2.PredictRequest):
            pinned: Any = scoring_pb2.PredictRequest()
            pinned.CopyFrom(request)
            pinned.family_version = experiment.version
            call = endpoint.predict
        else:
            pinned = scoring_pb2.ScoreRequest()
            pinned.CopyFrom(request)
            pinned.model_version = experiment.version
            pinned.explain = False
            call = endpoint.score
        started = time.perf_counter()
        try:
            response = await call(pinned, timeout=self._deadline_s, metadata=LOGGED_BY)
        except grpc.aio.AioRpcError as exc:
            self._failed.inc()
            logger.debug("shadow %s failed: %s", experiment.experiment_id, exc.code().name)
            return
        self._ok.inc()
        if self._log is not None:
            self._log.record(self._logged(request, response, experiment, started, model_name))

    @staticmethod
    def _logged(
        request: scoring_pb2.ScoreRequest | scoring_pb2.PredictRequest,
        response: Any,
        experiment: Experiment,
        started: float,
        model_name: str | None,
    ) -> Record:
        latency_ms = (time.perf_counter() - started) * 1000.0
        if isinstance(response, scoring_pb2.PredictResponse):
            logged = logged_as(response)
            version = None if logged.fallback else logged.model_version or experiment.version
            return Record(
                signal_id=request.signal_id,
                model_version=version,
                p_success=response.conf_pat,
                fallback=logged.fallback,
                fallback_reason=logged.fallback_reason,
                experiment_id=experiment.experiment_id,
                arm=ARM_SHADOW,
                latency_ms=latency_ms,
                model_name=model_name,
            )
        return Record(
            signal_id=request.signal_id,
            model_version=response.model_version or experiment.version,
            p_success=response.p_success,
            fallback=False,
            fallback_reason=None,
            experiment_id=experiment.experiment_id,
            arm=ARM_SHADOW,
            latency_ms=latency_ms,
        )
