"""The scorer's ``Scoring`` servicer: gRPC in and out, the policy in :class:`DataPlane`.

The only gRPC fact the data plane needs is whether the gateway marked the call
(``x-hindsight-logged-by: gateway``): the gateway logs those answers itself.
"""

from __future__ import annotations

from typing import Final

import grpc

from hindsight.scorer.dataplane import DataPlane
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

__all__ = ["LOGGED_BY_HEADER", "SERVICE_NAME", "ScoringServicer"]

SERVICE_NAME: Final = "hindsight.scoring.v1.Scoring"
LOGGED_BY_HEADER: Final = "x-hindsight-logged-by"


def _logged_by_gateway(context: grpc.aio.ServicerContext) -> bool:
    for key, value in context.invocation_metadata() or ():
        if key == LOGGED_BY_HEADER:
            return bool(value == "gateway")
    return False


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    """Implements ``Score``, ``ScoreBatch``, ``Predict`` and ``PredictBatch`` on a
    :class:`DataPlane`."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    async def Score(  # noqa: N802  (gRPC method name)
        self, request: ScoreRequest, context: grpc.aio.ServicerContext
    ) -> ScoreResponse:
        """Score one signal."""
        return self.plane.score(request, logged_upstream=_logged_by_gateway(context))

    async def ScoreBatch(  # noqa: N802  (gRPC method name)
        self, request: ScoreBatchRequest, context: grpc.aio.ServicerContext
    ) -> ScoreBatchResponse:
        """Score several signals (map or packed form); one invalid request fails the call."""
        return self.plane.score_batch(request, logged_upstream=_logged_by_gateway(context))

    async def Predict(  # noqa: N802  (gRPC method name)
        self, request: PredictRequest, context: grpc.aio.ServicerContext
    ) -> PredictResponse:
        """Every head of a model family for one signal."""
        return self.plane.predict(request, logged_upstream=_logged_by_gateway(context))

    async def PredictBatch(  # noqa: N802  (gRPC method name)
        self, request: PredictBatchRequest, context: grpc.aio.ServicerContext
    ) -> PredictBatchResponse:
        """Every head for several signals; one invalid request fails the call."""
        return self.plane.predict_batch(request, logged_upstream=_logged_by_gateway(context))
