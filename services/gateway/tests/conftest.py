"""Fixtures of the gateway tests (helpers in ``gateway_testkit``)."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the test kit importable

from gateway_testkit import Fake, Gateway, GatewayFactory, ListLog, start_fake  # noqa: E402

from hindsight.common.grpc_server import GrpcServer  # noqa: E402
from hindsight.gateway.dataplane import DataPlane, GatewayPolicy  # noqa: E402
from hindsight.gateway.domain.breaker import BreakerConfig  # noqa: E402
from hindsight.gateway.domain.routing import RoutingTable  # noqa: E402
from hindsight.gateway.grpc_api import SERVICE_NAME, ScoringGateway  # noqa: E402
from hindsight.gateway.shadow import ShadowScorer  # noqa: E402
from hindsight.gateway.upstream import ScorerPool  # noqa: E402
from hindsight.scoring.v1 import scoring_pb2_grpc  # noqa: E402


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[Fake]:
    started = await start_fake()
    yield started
    await started.server.stop(0)


@pytest_asyncio.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    made: list[Gateway] = []

    async def make(
        targets: list[str],
        *,
        breaker: BreakerConfig | None = None,
        policy: GatewayPolicy | None = None,
        shadow_deadline_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> Gateway:
        pool = ScorerPool(targets, breaker or BreakerConfig(), clock=clock)
        await pool.start()
        log = ListLog()
        table = RoutingTable()
        shadow = ShadowScorer(pool, log, deadline_s=shadow_deadline_s, max_in_flight=8)
        servicer = ScoringGateway(
            DataPlane(
                pool,
                policy or GatewayPolicy(),
                routes=lambda: table,
                log=log,
                shadow=shadow,
                clock=clock,
            )
        )
        server = GrpcServer(
            host="127.0.0.1",
            port=0,
            register=[lambda s: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, s)],
            service_names=[SERVICE_NAME],
        )
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        gateway = Gateway(servicer, pool, server, log, table, channel, shadow)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.channel.close()
        await gateway.shadow.stop()
        await gateway.server.stop(0)
        await gateway.pool.stop()
