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
    family_version: str = "v1_0_0"
    """The release a ``Predict`` is answered by unless it pins one (in ``pinned``)."""
    missing_heads: tuple[str, ...] = ()
    """Heads a ``Predict`` answer leaves out."""
    fallback_heads: tuple[str, ...] = ()
    """Heads a ``Predict`` answer marks as the scorer's own fallback."""
    unknown_families: tuple[str, ...] = ()
    """Families a ``Predict`` is refused for as the scorer refuses one it has not loaded
    (INVALID_ARGUMENT ``family: unknown family ...``)."""


# What the fake's Predict answers per head besides entry (conf_pat = the behaviour's p):
# (value, member, alphas, quantiles).
FAKE_HEADS: dict[str, tuple[float, str, list[float], list[float]]] = {
    "risk": (1.125, "risk", [0.6, 0.7, 0.8], [0.875, 1.125, 1.5]),
    "rr": (2.625, "rr", [0.6], [2.625]),
    "offset": (-0.25, "offset", [0.5], [-0.25]),
}
FAKE_TOP: dict[str, str] = {"risk": "sl_katr", "rr": "rr_target", "offset": "offset_katr"}


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
        predict = isinstance(request, scoring_pb2.PredictRequest)
        pin_field = "family_version" if predict else "model_version"
        pinned = getattr(request, pin_field)
        serving = b.family_version if predict else b.version
        if pinned and pinned != serving:
            if pinned not in b.pinned:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{pin_field}: not loaded")
            p, sleep = b.pinned[pinned]
            await asyncio.sleep(sleep)
            self.pinned_done.append(pinned)
            return p, pinned
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
        return b.p_success, serving

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

    def _prediction(
        self, request: scoring_pb2.PredictRequest, p: float, version: str
    ) -> scoring_pb2.PredictResponse:
        b = self.behaviour
        cluster = request.liquidity_cluster
        answer = scoring_pb2.PredictResponse(
            signal_id=request.signal_id,
            side=request.side,
            family=request.family or "playbook",
            family_version=version,
            liquidity_cluster=cluster,
            prediction_time_ms=0.5,
        )
        heads = {"entry": (p, f"entry_{cluster or 'pooled'}", [], []), **FAKE_HEADS}
        for head, (value, member, alphas, quantiles) in heads.items():
            if head in b.missing_heads:
                continue
            one = answer.heads[head]
            one.value, one.member, one.model_version = value, member, version
            one.alphas.extend(alphas)
            one.quantiles.extend(quantiles)
            if head in b.fallback_heads:
                one.fallback, one.fallback_reason = True, "member_not_loaded"
                answer.fallback = True
            setattr(answer, FAKE_TOP.get(head, "conf_pat"), value)
        if "offset" not in b.missing_heads:
            answer.entry_style = "LIMIT"
        return answer

    async def _known_family(self, family: str, field: str, context: Any) -> None:
        if (family or "playbook") in self.behaviour.unknown_families:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{field}: unknown family {family!r}"
            )

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self._known_family(request.family, "family", context)
        p, version = await self._answer(request, context)
        return self._prediction(request, p, version)

    async def PredictBatch(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        self.batches.append(request)
        answer = scoring_pb2.PredictBatchResponse()
        for i, one in enumerate(request.requests):
            await self._known_family(one.family, f"requests[{i}].family", context)
            p, version = await self._answer(one, context)
            answer.responses.append(self._prediction(one, (p + i / 100) % 1, version))
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


def predict_request(signal_id: str = "sig-1", **fields: Any) -> scoring_pb2.PredictRequest:
    fields.setdefault("side", "buy")
    return scoring_pb2.PredictRequest(signal_id=signal_id, features={"f00": 1.0}, **fields)


def request(signal_id: str = "sig-1", **fields: Any) -> scoring_pb2.ScoreRequest:
    fields.setdefault("side", "buy")
    return scoring_pb2.ScoreRequest(signal_id=signal_id, features={"f00": 1.0}, **fields)
