"""The gateway's ``Scoring`` servicer: gRPC in and out, the policy in :class:`DataPlane`.

Each method hands the request and the caller's remaining time to the data plane and
converts what comes back: an answer; INVALID_ARGUMENT with the scorer's message
(:class:`RelayedInvalid`); :class:`~hindsight.common.errors.InvalidInputError` goes to the
shared interceptor, which maps it to INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from typing import Final

import grpc

from hindsight.gateway.dataplane import DataPlane, RelayedInvalid
from hindsight.scoring.v1 import scoring_pb2_grpc
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

__all__ = ["SERVICE_NAME", "ScoringGateway"]

SERVICE_NAME: Final = "hindsight.scoring.v1.Scoring"


class ScoringGateway(scoring_pb2_grpc.ScoringServicer):
    """Implements ``Score``, ``ScoreBatch``, ``Predict`` and ``PredictBatch`` on a
    :class:`DataPlane`."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def Score(  # noqa: N802  (gRPC method name)
        self, request: ScoreRequest, context: grpc.aio.ServicerContext
    ) -> ScoreResponse:
        """Score one signal: the scorer's answer, or a fallback; never an error if valid."""
        try:
            return await self.plane.score(request, context.time_remaining())
        except RelayedInvalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.details)
            raise  # abort raises; this is never reached

    async def ScoreBatch(  # noqa: N802  (gRPC method name)
        self, request: ScoreBatchRequest, context: grpc.aio.ServicerContext
    ) -> ScoreBatchResponse:
        """Forward the batch as one call (map or packed form); failures fall back per request."""
        try:
            return await self.plane.score_batch(request, context.time_remaining())
        except RelayedInvalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.details)
            raise

    async def Predict(  # noqa: N802  (gRPC method name)
        self, request: PredictRequest, context: grpc.aio.ServicerContext
    ) -> PredictResponse:
        """Every head for one signal: the scorer's or the defaults; never an error if valid."""
        try:
            return await self.plane.predict(request, context.time_remaining())
        except RelayedInvalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.details)
            raise

    async def PredictBatch(  # noqa: N802  (gRPC method name)
        self, request: PredictBatchRequest, context: grpc.aio.ServicerContext
    ) -> PredictBatchResponse:
        """Forward the batch as one call; failures give per-head defaults per request."""
        try:
            return await self.plane.predict_batch(request, context.time_remaining())
        except RelayedInvalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.details)
            raise
