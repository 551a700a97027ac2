"""The composition root: builds the scorer's parts, wires them, owns start and stop.

Start order: HTTP and gRPC first (NOT_SERVING until a model is loaded), then the
prediction log, then the deployment bootstrap, which never blocks on NATS:

1. NATS connects in the background (retried forever); if it connects within
   ``nats_grace_s``, the JetStream replay of ``model.deployed`` decides what loads;
2. otherwise the registry's ``/v1/deployments``;
3. otherwise the local cache of what served last (``$HINDSIGHT_DATA_DIR/scorer/deployments.json``).

When NATS connects later, its replay takes over (JetStream is the source of truth).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass, field

from faststream.nats import NatsBroker

from hindsight.common.broker import create_broker
from hindsight.common.grpc_server import GrpcServer
from hindsight.common.http import HttpServer
from hindsight.common.limits import MAX_FORWARDED_BYTES, max_receive_option
from hindsight.common.runtime import Part
from hindsight.common.tasks import cancel_and_wait
from hindsight.common.tls import ServerTls
from hindsight.scorer.config import ScorerSettings
from hindsight.scorer.dataplane import DataPlane
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.families import FamilyStore
from hindsight.scorer.domain.models import ModelStore
from hindsight.scorer.drift_metrics import DriftExporter
from hindsight.scorer.family_loader import FamilyLoader
from hindsight.scorer.grpc_api import SERVICE_NAME, ScoringServicer
from hindsight.scorer.http_api import create_app
from hindsight.scorer.loader import ArtifactLoader
from hindsight.scorer.messaging import DeploymentFeed, PredictionLog
from hindsight.scorer.reconciler import Reconciler
from hindsight.scorer.sources import DeploymentCache, fetch_registry_deployments
from hindsight.scoring.v1 import scoring_pb2_grpc

__all__ = ["ScorerApp", "build_app", "build_settings"]

logger = logging.getLogger(__name__)


def build_settings(**overrides: object) -> ScorerSettings:
    """Settings from the environment, with keyword overrides (tests)."""
    return ScorerSettings(**overrides)  # type: ignore[arg-type]


@dataclass
class ScorerApp:
    """Every part of a running scorer, for ``serve`` and for tests."""

    settings: ScorerSettings
    store: ModelStore
    families: FamilyStore
    reconciler: Reconciler
    grpc: GrpcServer
    http: HttpServer
    broker: NatsBroker | None
    feed: DeploymentFeed | None
    log: PredictionLog | None
    drift: DriftExporter | None = None
    bootstrapped: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the start-up sources (JetStream, registry, cache) have been tried."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def parts(self) -> list[Part]:
        """Ordered parts for :func:`hindsight.common.runtime.serve`."""
        return [
            Part("http", self.http),
            Part("grpc", _Grpc(self.grpc)),
            Part("scorer", _Core(self)),
        ]

    async def start(self) -> None:
        """Start everything (tests; the process uses :meth:`parts` with ``serve``)."""
        for part in self.parts():
            await part.component.start()

    async def stop(self) -> None:
        """Stop everything in reverse order."""
        for part in reversed(self.parts()):
            await part.component.stop()

    async def _bootstrap(self) -> None:
        try:
            await self._load_initial_state()
        finally:
            self.bootstrapped.set()

    async def _load_initial_state(self) -> None:
        feed = self.feed
        if feed is not None:
            await feed.start()
            with suppress(TimeoutError):
                await asyncio.wait_for(feed.replayed.wait(), self.settings.nats_grace_s)
            if self.reconciler.source == "jetstream":
                return
        # NATS is down or holds no deployment (e.g. older than the stream's max age).
        try:
            rows = await fetch_registry_deployments(
                self.settings.registry_url, timeout=self.settings.registry_timeout_s
            )
        except Exception as exc:
            logger.warning("registry not reachable at start: %s", exc)
            rows = []
        if rows:
            await self.reconciler.replace_state(rows, source="registry", fallback=True)
            return
        cached = self.reconciler.cache.load()
        if cached:
            await self.reconciler.replace_state(cached, source="cache", fallback=True)
        elif self.reconciler.source != "jetstream":
            logger.warning("no deployment known yet (NATS, registry and cache all empty)")

    async def _on_replayed(self, deployments: list[Deployment]) -> None:
        if not deployments:
            logger.info("no model.deployed in JetStream; keeping the current state")
            return
        await self.reconciler.replace_state(deployments, source="jetstream")

    async def _sync_health(self) -> None:
        serving = not self.store.empty or not self.families.empty
        await self.grpc.set_serving(SERVICE_NAME, serving)
        await self.grpc.set_serving("", serving)


class _Grpc:
    """The gRPC server, reporting NOT_SERVING until the first model or release is loaded."""

    def __init__(self, server: GrpcServer) -> None:
        self.server = server

    async def start(self) -> None:
        await self.server.set_serving(SERVICE_NAME, False)
        await self.server.set_serving("", False)
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()


class _Core:
    """The non-transport part: prediction log and deployment bootstrap."""

    def __init__(self, app: ScorerApp) -> None:
        self.app = app

    async def start(self) -> None:
        app = self.app
        if app.log is not None:
            await app.log.start()
        app._tasks.append(asyncio.create_task(app._bootstrap(), name="scorer-bootstrap"))
        if app.drift is not None:
            app._tasks.append(asyncio.create_task(app.drift.run(), name="scorer-drift"))

    async def stop(self) -> None:
        app = self.app
        for task in app._tasks:
            await cancel_and_wait(task)
        app._tasks.clear()
        if app.log is not None:
            await app.log.stop()
        if app.feed is not None:
            await app.feed.stop()


def build_app(settings: ScorerSettings) -> ScorerApp:
    """Wire the scorer from its settings; nothing starts or binds here."""
    store = ModelStore(default_model=settings.default_model)
    families = FamilyStore(default_family=settings.default_family)
    loader = ArtifactLoader(
        settings.artifact_root,
        warmup_runs=settings.warmup_runs,
        drift_window=settings.drift_window if settings.drift_enabled else None,
        drift_min_rows=settings.drift_min_rows,
    )
    cache = DeploymentCache(settings.cache_path)
    broker = create_broker(settings, client_name="scorer") if settings.nats_servers else None
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
    servicer = ScoringServicer(DataPlane(store, log, families=families))
    grpc_server = GrpcServer(
        host=settings.grpc_host,
        port=settings.grpc_port,
        register=[lambda server: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, server)],
        service_names=[SERVICE_NAME],
        # Explicit, and above the gateway's: a request it accepted, with the versions it
        # pins, always fits (hindsight.common.limits).
        options=[max_receive_option(MAX_FORWARDED_BYTES)],
        tls=ServerTls.from_settings(
            settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
        ),
    )
    http = HttpServer(create_app(store, families), host=settings.http_host, port=settings.http_port)
    holder: dict[str, ScorerApp] = {}

    async def on_change() -> None:
        await holder["app"]._sync_health()

    reconciler = Reconciler(
        store,
        loader,
        cache,
        families=families,
        family_loader=FamilyLoader(settings.artifact_root, warmup_runs=settings.warmup_runs),
        on_change=on_change,
    )
    reconciler.remember_last_good(cache.load() or [])
    drift = DriftExporter(
        store,
        threshold=settings.drift_psi_threshold,
        flush_s=settings.drift_flush_s,
        export_s=settings.drift_export_s,
    )
    app = ScorerApp(
        settings, store, families, reconciler, grpc_server, http, broker, None, log, drift
    )
    holder["app"] = app
    if broker is not None:
        app.feed = DeploymentFeed(
            broker, settings, on_replayed=app._on_replayed, on_deployed=reconciler.apply
        )
    return app
