"""The composition root: builds the labeling service's parts from settings and wires them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from faststream.nats import NatsBroker

from hindsight.common.broker import create_broker
from hindsight.common.db import DatabasePart
from hindsight.common.http import HttpServer, Readiness, create_http_app
from hindsight.common.logs import configure_logging
from hindsight.common.outbox import OutboxRelay
from hindsight.common.runtime import BrokerPart, Part, PartGroup, nats_ready, serve
from hindsight.common.tasks import cancel_and_wait
from hindsight.labeling.auth import Auth
from hindsight.labeling.config import LabelingSettings
from hindsight.labeling.http_api import api_router
from hindsight.labeling.http_guards import install_guards
from hindsight.labeling.ingest import QueueBuilder
from hindsight.labeling.login_throttle import InMemoryLoginThrottle, LoginThrottle
from hindsight.labeling.memory_client import MemoryClient
from hindsight.labeling.messaging import make_publisher, register_consumers
from hindsight.labeling.metrics import REQUEST_SECONDS
from hindsight.labeling.service import LabelService
from hindsight.labeling.storage import MIGRATIONS, OUTBOX, Storage
from hindsight.labeling.web import web_router

__all__ = ["SERVICE", "Labeling", "build_settings", "main"]

SERVICE = "labeling"
logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def build_settings(**overrides: Any) -> LabelingSettings:
    """Settings from the environment, keyword overrides first (tests)."""
    return LabelingSettings(**overrides)


class _Metrics:
    """Keeps the queue gauges current (saves refresh them too; events arrive in bulk)."""

    def __init__(self, labels: LabelService, *, interval_s: float = 5.0) -> None:
        self.labels = labels
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.labels.refresh_metrics()
            except Exception:
                logger.warning("could not refresh the queue gauges", exc_info=True)

    async def start(self) -> None:
        await self.labels.refresh_metrics()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


def _route_timing(app: FastAPI) -> None:
    @app.middleware("http")
    async def timed(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", None) or "unmatched"
        REQUEST_SECONDS.labels(name).observe(time.perf_counter() - started)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


class Labeling(PartGroup):
    """Every part of the labeling service, in start order."""

    def __init__(
        self, settings: LabelingSettings, *, login_throttle: LoginThrottle | None = None
    ) -> None:
        self.settings = settings
        self.broker: NatsBroker = create_broker(settings, client_name=SERVICE)
        self.storage = Storage(None)
        publish = make_publisher(self.broker)
        self.labels = LabelService(self.storage, publish, labels_dir=settings.resolved_labels_dir())
        self.outbox = OutboxRelay(
            OUTBOX,
            self.storage,
            publish,
            poll_s=settings.outbox_retry_s,
            name="labeling-outbox-relay",
        )
        self.queue = QueueBuilder(
            self.storage, settings.image_roots, png_limits=settings.png_limits()
        )
        register_consumers(self.broker, self.queue, max_deliveries=settings.max_deliveries)
        self.memory = MemoryClient(settings.memory_url, health_ttl_s=settings.memory_health_ttl_s)
        self.auth = Auth(self.storage, ttl_s=settings.session_ttl_s)
        # In-process, like the per-trade save lock: one replica (README: Sign-in).
        self.login_throttle: LoginThrottle = login_throttle or InMemoryLoginThrottle(
            max_failures=settings.login_max_failures,
            address_max_failures=settings.login_address_max_failures,
            window_s=settings.login_window_s,
            lockout_s=settings.login_lockout_s,
            max_keys=settings.login_throttle_max_keys,
        )
        readiness = Readiness(SERVICE)
        readiness.register("database", self.storage.ping)
        readiness.register("nats", nats_ready(self.broker))
        self.http_app = create_http_app(service=SERVICE, readiness=readiness)
        _route_timing(self.http_app)
        install_guards(self.http_app, auth=self.auth)
        self.http_app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
        self.http_app.include_router(
            api_router(
                storage=self.storage,
                labels=self.labels,
                auth=self.auth,
                memory=self.memory,
                image_roots=settings.image_roots,
                png_limits=settings.png_limits(),
                default_page_size=settings.page_size,
            )
        )
        self.http_app.include_router(
            web_router(
                storage=self.storage,
                auth=self.auth,
                login_throttle=self.login_throttle,
                memory=self.memory,
                keymap=settings.keymap,
                secure_cookie=settings.secure_cookie,
                session_ttl_s=settings.session_ttl_s,
                page_size=settings.page_size,
            )
        )
        self.http = HttpServer(self.http_app, host=settings.http_host, port=settings.http_port)
        self.parts = [
            Part(
                "database",
                DatabasePart(settings, self.storage, schema=SERVICE, migrations_dir=MIGRATIONS),
            ),
            Part("metrics", _Metrics(self.labels)),
            Part("nats", BrokerPart(self.broker, settings)),
            Part("outbox", self.outbox),
            Part("memory", self.memory),
            Part("http", self.http),
        ]


def main() -> None:
    """Run the labeling service until SIGINT/SIGTERM."""
    settings = build_settings()
    configure_logging(SERVICE, settings.log_level)
    service = Labeling(settings)
    asyncio.run(serve(SERVICE, service.parts))
