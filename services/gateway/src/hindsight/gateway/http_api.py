"""HTTP: ``/healthz``, ``/readyz``, ``/metrics``, ``GET /v1/routes``, ``GET /v1/breakers``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI

from hindsight.common.http import Readiness, create_http_app
from hindsight.gateway.domain.routing import RoutingTable
from hindsight.gateway.upstream import ScorerPool

__all__ = ["create_app"]


def create_app(
    pool: ScorerPool,
    routes: Callable[[], RoutingTable],
    *,
    routing_status: Callable[[], dict[str, Any]],
) -> FastAPI:
    """The gateway's HTTP app.

    Ready as soon as it listens: the gateway answers every valid call (fallbacks
    included), with or without NATS and scorers; the breakers say how the scorers are.
    """
    app = create_http_app(service="gateway", readiness=Readiness("gateway"))
    router = APIRouter(prefix="/v1")

    @router.get("/routes")
    async def list_routes() -> dict[str, Any]:
        """The routing table: production version and running experiments per model."""
        return {**routing_status(), "models": routes().snapshot()}

    @router.get("/breakers")
    async def list_breakers() -> list[dict[str, object]]:
        """Each scorer endpoint's breaker: state, window counts, calls in flight."""
        return [
            {**endpoint.breaker.snapshot(), "in_flight": endpoint.in_flight}
            for endpoint in pool.endpoints
        ]

    app.include_router(router)
    return app
