"""The composition root: builds the gateway's parts, wires them, owns start and stop.

Start order: HTTP, gRPC (SERVING at once: the gateway answers every valid call, with
fallbacks when no scorer can), then the prediction log and the routing feed, which
connects to NATS in the background and never blocks a call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from faststream.nats import NatsBroker

from hindsight.common.broker import create_broker
from hindsight.common.grpc_server import GrpcServer
from hindsight.common.http import HttpServer
from hindsight.common.limits import MAX_REQUEST_BYTES, max_receive_option
from hindsight.common.runtime import Part
from hindsight.gateway.config import GatewaySettings
from hindsight.gateway.dataplane import DataPlane, GatewayPolicy
from hindsight.gateway.domain.routing import RoutingTable
from hindsight.gateway.grpc_api import SERVICE_NAME, ScoringGateway
from hindsight.gateway.http_api import RoutingStatus, create_app
from hindsight.gateway.messaging import PredictionLog, RoutingFeed, is_connected
from hindsight.gateway.shadow import ShadowScorer
from hindsight.gateway.tls import scorer_tls, server_tls
from hindsight.gateway.upstream import ScorerPool
from hindsight.scoring.v1 import scoring_pb2_grpc

__all__ = ["GatewayApp", "build_app", "build_settings"]


def build_settings(**overrides: object) -> GatewaySettings:
    """Settings from the environment, with keyword overrides (tests)."""
    return GatewaySettings(**overrides)  # type: ignore[arg-type]


@dataclass
class GatewayApp:
    """Every part of a running gateway, for ``serve`` and for tests."""

    settings: GatewaySettings
    pool: ScorerPool
    servicer: ScoringGateway
    grpc: GrpcServer
    http: HttpServer
    shadow: ShadowScorer
    broker: NatsBroker | None = None
    log: PredictionLog | None = None
    feed: RoutingFeed | None = None
    table: RoutingTable = field(default_factory=RoutingTable)

    def routes(self) -> RoutingTable:
        """The current routing table (replaced whole after a replay)."""
        return self.table

    def set_routes(self, table: RoutingTable) -> None:
        """Swap in a new routing table."""
        self.table = table

    def routing_status(self) -> RoutingStatus:
        """Where the routing table comes from, for ``GET /v1/routes``."""
        return RoutingStatus(
            nats_configured=self.broker is not None,
            nats_connected=self.broker is not None and is_connected(self.broker),
            replayed=self.feed is not None and self.feed.replayed.is_set(),
            events_applied=self.table.events_applied,
        )

    def parts(self) -> list[Part]:
        """Ordered parts for :func:`hindsight.common.runtime.serve`."""
        return [
            Part("scorer-channels", self.pool),
            Part("http", self.http),
            Part("grpc", self.grpc),
            Part("gateway", _Core(self)),
        ]

    async def start(self) -> None:
        """Start everything (tests; the process uses :meth:`parts` with ``serve``)."""
        for part in self.parts():
            await part.component.start()

    async def stop(self) -> None:
        """Stop everything in reverse order."""
        for part in reversed(self.parts()):
            await part.component.stop()


class _Core:
    """The non-transport part: prediction log, routing feed, shadow tasks."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app

    async def start(self) -> None:
        if self.app.log is not None:
            await self.app.log.start()
        if self.app.feed is not None:
            await self.app.feed.start()

    async def stop(self) -> None:
        app = self.app
        await app.shadow.stop()
        if app.log is not None:
            await app.log.stop()
        if app.feed is not None:
            await app.feed.stop()


def build_app(settings: GatewaySettings) -> GatewayApp:
    """Wire the gateway from its settings; nothing starts or binds here."""
    pool = ScorerPool(settings.scorers, settings.breaker_config(), tls=scorer_tls(settings))
    broker = create_broker(settings, client_name="gateway") if settings.nats_servers else None
    log = (
        PredictionLog(
            broker,
            capacity=settings.log_queue_size,
            max_in_flight=settings.log_max_in_flight,
            linger_s=settings.log_linger_ms / 1000,
        )
        if broker is not None
        else None
    )
    shadow = ShadowScorer(
        pool,
        log,
        deadline_s=settings.shadow_deadline_ms / 1000.0,
        max_in_flight=settings.shadow_max_in_flight,
    )
    holder: dict[str, GatewayApp] = {}

    def routes() -> RoutingTable:
        return holder["app"].table

    policy = GatewayPolicy(
        default_model=settings.default_model,
        default_deadline_s=settings.default_deadline_ms / 1000.0,
        margin_s=settings.deadline_margin_ms / 1000.0,
        margin_ratio=settings.deadline_margin_ratio,
        fallback_p_success=settings.fallback_p_success,
        max_in_flight=settings.max_in_flight,
        default_family=settings.default_family,
        head_defaults=settings.head_defaults(),
    )
    servicer = ScoringGateway(DataPlane(pool, policy, routes=routes, log=log, shadow=shadow))
    register: list[Callable[[grpc.aio.Server], None]] = [
        lambda server: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, server)
    ]
    grpc_server = GrpcServer(
        host=settings.grpc_host,
        port=settings.grpc_port,
        register=register,
        service_names=[SERVICE_NAME],
        options=[max_receive_option(MAX_REQUEST_BYTES)],  # larger: RESOURCE_EXHAUSTED
        tls=server_tls(settings),
    )
    http = HttpServer(
        create_app(pool, routes, routing_status=lambda: holder["app"].routing_status()),
        host=settings.http_host,
        port=settings.http_port,
    )
    app = GatewayApp(settings, pool, servicer, grpc_server, http, shadow, broker, log)
    holder["app"] = app
    if broker is not None:
        app.feed = RoutingFeed(broker, settings, get_table=app.routes, set_table=app.set_routes)
    return app
