"""Gateway test kit: a fake scorer we control on a real port, and small helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from hindsight.common.grpc_server import GrpcServer
from hindsight.common.tls import ServerTls
from hindsight.gateway.domain.routing import RoutingTable
from hindsight.gateway.grpc_api import ScoringGateway
from hindsight.gateway.messaging import Record
from hindsight.gateway.shadow import ShadowScorer
from hindsight.gateway.upstream import ScorerPool
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc


class SteppedClock:
    """``time.monotonic`` plus the seconds a test skipped with ``advance``.

    Real time still runs (call latencies, deadlines), but a breaker's open period is
    skipped instead of slept through.
    """

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


@dataclass
class Behaviour:
    """What the fake answers: mode ok | sleep | unavailable | no_model | invalid | internal."""

    mode: str = "ok"
    sleep_s: float = 0.0
    p_success: float = 0.25
    version: str = "v1"
    pinned: dict[str, tuple[float, float]] = field(default_factory=dict)
    """version → (p_success, sleep_s) for calls pinning it; others INVALID_ARGUMENT."""


class FakeScorer(scoring_pb2_grpc.ScoringServicer):
    """A scorer we control, on a real port."""

    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.requests: list[Any] = []
        self.batches: list[Any] = []
        """Every ScoreBatchRequest as received (its requests are also in ``requests``)."""
        self.metadata: list[dict[str, str]] = []
        self.pinned_done: list[str] = []

    async def _answer(self, request: Any, context: grpc.aio.ServicerContext) -> tuple[float, str]:
        self.requests.append(request)
        self.metadata.append(dict(context.invocation_metadata() or ()))
        b = self.behaviour
        if request.model_version and request.model_version != b.version:
            if request.model_version not in b.pinned:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "model_version: not loaded")
            p, sleep = b.pinned[request.model_version]
            await asyncio.sleep(sleep)
            self.pinned_done.append(request.model_version)
            return p, request.model_version
        if b.mode == "sleep":
            await asyncio.sleep(b.sleep_s)
        elif b.mode == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "going down")
        elif b.mode == "no_model":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no model loaded yet")
        elif b.mode == "invalid":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "features.f00: missing")
        elif b.mode == "internal":
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        return b.p_success, b.version

    async def Score(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        p, version = await self._answer(request, context)
        return scoring_pb2.ScoreResponse(
            signal_id=request.signal_id,
            p_success=p,
            p_failure=1 - p,
            ci_low=0.1,
            ci_high=0.9,
            model_version=version,
        )

    async def ScoreBatch(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        self.batches.append(request)
        answer = scoring_pb2.ScoreBatchResponse()
        for i, one in enumerate(request.requests):
            p, version = await self._answer(one, context)
            answer.responses.add(
                signal_id=one.signal_id, p_success=(p + i / 100) % 1, model_version=version
            )
        return answer


@dataclass
class Fake:
    scorer: FakeScorer
    server: grpc.aio.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


class ListLog:
    """A prediction log that keeps records in a list."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def record(self, record: Record) -> None:
        self.records.append(record)


@dataclass
class Gateway:
    servicer: ScoringGateway
    pool: ScorerPool
    server: GrpcServer
    log: ListLog
    table: RoutingTable
    channel: grpc.aio.Channel
    shadow: ShadowScorer

    @property
    def stub(self) -> scoring_pb2_grpc.ScoringStub:
        return scoring_pb2_grpc.ScoringStub(self.channel)


GatewayFactory = Callable[..., Any]
"""The ``gateway_factory`` fixture: ``await make([targets], breaker=..., clock=...)``."""


async def start_fake(port: int = 0, *, tls: ServerTls | None = None) -> Fake:
    """A fake scorer on 127.0.0.1; with ``tls``, on a TLS (or mutual TLS) port."""
    scorer = FakeScorer()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    scoring_pb2_grpc.add_ScoringServicer_to_server(scorer, server)
    address = f"127.0.0.1:{port}"
    if tls is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, tls.credentials())
    await server.start()
    return Fake(scorer, server, bound)


def request(signal_id: str = "sig-1", **fields: Any) -> scoring_pb2.ScoreRequest:
    fields.setdefault("side", "buy")
    return scoring_pb2.ScoreRequest(signal_id=signal_id, features={"f00": 1.0}, **fields)
