"""The HTTP side every service has: ``/healthz``, ``/readyz``, ``/metrics``.

Services register readiness checks (async callables that raise when not ready) and add
their own routers to the app. While the HTTP server runs, the checks are re-evaluated every
few seconds and ``hindsight_ready`` follows them, whether or not anyone calls ``/readyz``
(compose health checks call ``/healthz``; nothing there polls readiness). Hindsight errors
map to HTTP status codes here, once. The three routes declare what they answer
(:class:`Health`, :class:`ReadinessReport`, Prometheus text), so every service's
``/openapi.json`` documents them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Annotated, Literal

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, PlainSerializer, SecretStr

from hindsight.common.errors import (
    AlreadyExistsError,
    HindsightError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from hindsight.common.metrics import BUILD_INFO, READY
from hindsight.common.tasks import cancel_and_wait

__all__ = [
    "HTTP_STATUS",
    "ErrorBody",
    "Health",
    "HttpServer",
    "IsoDatetime",
    "PrometheusResponse",
    "Readiness",
    "ReadinessCheck",
    "ReadinessReport",
    "bearer_auth",
    "create_http_app",
]

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]

HTTP_STATUS: dict[type[HindsightError], int] = {
    InvalidInputError: 422,
    NotFoundError: 404,
    AlreadyExistsError: 409,
    UnauthenticatedError: 401,
    PermissionDeniedError: 403,
    UnavailableError: 503,
}


def _isoformat(value: datetime) -> str:
    return value.isoformat()


IsoDatetime = Annotated[datetime, PlainSerializer(_isoformat, return_type=str, when_used="json")]
"""A time written in JSON as ``datetime.isoformat()`` (``+00:00``), for the fields an API has
always written that way; a plain ``datetime`` is written by pydantic (``Z`` for UTC)."""


class Health(BaseModel):
    """Body of ``GET /healthz``: the process answers."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ok"] = "ok"
    service: str


class ReadinessReport(BaseModel):
    """Body of ``GET /readyz`` (200 when ready, 503 otherwise)."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ready", "not ready"]
    service: str
    checks: dict[str, str]
    """Check name → ``"ok"`` or why it failed."""


class ErrorBody(BaseModel):
    """Body of an error answer: the error's class, its message, the field when one is at fault."""

    model_config = ConfigDict(frozen=True)

    error: str
    message: str
    field: str | None = None


class PrometheusResponse(Response):
    """The Prometheus text exposition format (``GET /metrics``)."""

    media_type = CONTENT_TYPE_LATEST


def _status_for(exc: HindsightError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def bearer_auth(token: SecretStr | None) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency: the request must carry ``Authorization: Bearer <token>``.

    With no token configured every request is refused: a write API is never open.
    """

    async def check(request: Request) -> None:
        if token is None:
            raise UnauthenticatedError("write API disabled: HINDSIGHT_ADMIN_TOKEN is not set")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()
        ):
            raise UnauthenticatedError("missing or wrong bearer token")

    return check


class Readiness:
    """Named readiness checks; ``/readyz`` is 200 only when every one passes in time.

    :meth:`evaluate` runs them and sets ``hindsight_ready``; :meth:`watch` does so every
    ``every_s`` seconds (the :class:`HttpServer` runs it for as long as it serves).
    """

    def __init__(self, service: str, *, timeout: float = 2.0, every_s: float = 5.0) -> None:
        self.service = service
        self.timeout = timeout
        self.every_s = every_s
        self.last: dict[str, str] | None = None
        """The checks' results at the last evaluation; None before the first."""
        self._checks: dict[str, ReadinessCheck] = {}

    def register(self, name: str, check: ReadinessCheck) -> None:
        """Add a check; it raises (any exception) or times out when not ready."""
        self._checks[name] = check

    async def run(self) -> dict[str, str]:
        """Run every check concurrently: name → ``"ok"`` or the reason it failed."""

        async def one(check: ReadinessCheck) -> str:
            try:
                await asyncio.wait_for(check(), self.timeout)
            except TimeoutError:
                return f"timed out after {self.timeout:g}s"
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return "ok"

        names = list(self._checks)
        results = await asyncio.gather(*(one(self._checks[n]) for n in names))
        return dict(zip(names, results, strict=True))

    async def evaluate(self) -> tuple[bool, dict[str, str]]:
        """Run every check, remember the results and set ``hindsight_ready`` (1 or 0)."""
        checks = await self.run()
        ok = all(result == "ok" for result in checks.values())
        self.last = checks
        READY.labels(self.service).set(1 if ok else 0)
        return ok, checks

    async def watch(self) -> None:
        """Evaluate every ``every_s`` seconds until cancelled; a failing round is logged."""
        while True:
            try:
                await self.evaluate()
            except Exception:  # a check that escapes run(): keep the gauge loop alive
                logger.exception("readiness evaluation failed")
            await asyncio.sleep(self.every_s)


def create_http_app(
    *,
    service: str,
    version: str = "0.1.0",
    readiness: Readiness | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> FastAPI:
    """A FastAPI app with the three operator endpoints and the error handlers."""
    ready = readiness or Readiness(service)
    app = FastAPI(title=f"hindsight-{service}", version=version)
    app.state.readiness = ready
    BUILD_INFO.labels(service, version).set(1)
    # Exported from the start (not only after the first /readyz), so the alert can fire.
    READY.labels(service).set(0)

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        return Health(service=service)

    @app.get(
        "/readyz",
        response_model=ReadinessReport,
        responses={503: {"model": ReadinessReport, "description": "Not ready"}},
    )
    async def readyz(response: Response) -> ReadinessReport:
        ok, checks = await ready.evaluate()  # checked now: a probe sees the current state
        response.status_code = 200 if ok else 503
        return ReadinessReport(
            status="ready" if ok else "not ready", service=service, checks=checks
        )

    @app.get("/metrics", response_class=PrometheusResponse)
    async def metrics() -> PrometheusResponse:
        return PrometheusResponse(generate_latest(registry))

    @app.exception_handler(HindsightError)
    async def hindsight_error(_: Request, exc: HindsightError) -> JSONResponse:
        status = _status_for(exc)
        body = ErrorBody(error=type(exc).__name__, message=exc.message)
        if isinstance(exc, InvalidInputError) and exc.field:
            body = ErrorBody(error=body.error, message=exc.reason, field=exc.field)
        if status >= 500:
            logger.error("request failed: %s", exc)
        return JSONResponse(body.model_dump(exclude_none=True), status_code=status)

    return app


class _EmbeddedUvicorn(uvicorn.Server):
    # The service owns SIGINT/SIGTERM and stops every transport in order; uvicorn must
    # not capture and re-raise them behind its back.
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Runs a FastAPI app with uvicorn inside the service's own event loop.

    An app made by :func:`create_http_app` carries its :class:`Readiness`; while serving,
    the server keeps ``hindsight_ready`` current with :meth:`Readiness.watch`.
    """

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self._server = _EmbeddedUvicorn(config)
        self._readiness: Readiness | None = getattr(app.state, "readiness", None)
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    async def start(self) -> None:
        """Bind and serve in a background task; returns once listening."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise a bind error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        if self._readiness is not None:
            self._watch = asyncio.create_task(self._readiness.watch(), name="readiness")

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, return when down."""
        await cancel_and_wait(self._watch)
        self._watch = None
        if self._task is None:
            return
        self._server.should_exit = True
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None
