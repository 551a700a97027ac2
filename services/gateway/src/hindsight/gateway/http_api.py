"""HTTP: ``/healthz``, ``/readyz``, ``/metrics``, ``GET /v1/routes``, ``GET /v1/breakers``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict

from hindsight.common.http import Readiness, create_http_app
from hindsight.gateway.domain.routing import RoutingTable
from hindsight.gateway.upstream import ScorerPool

__all__ = [
    "BreakerPublic",
    "ExperimentRoutePublic",
    "ModelRoutesPublic",
    "RoutesPublic",
    "RoutingStatus",
    "create_app",
]


class _Public(BaseModel):
    # Built from the domain's frozen dataclasses (from_attributes), never changed after.
    model_config = ConfigDict(frozen=True, from_attributes=True)


class RoutingStatus(_Public):
    """Where the routing table comes from: NATS, and whether its history was replayed."""

    nats_configured: bool
    nats_connected: bool
    replayed: bool
    events_applied: int


class ExperimentRoutePublic(_Public):
    """A running experiment of a model."""

    experiment_id: str
    kind: Literal["split", "shadow"]
    version: str
    candidate_weight: float | None
    """The candidate's share of the requests (split experiments; null for shadows)."""


class ModelRoutesPublic(_Public):
    """A model's production version and running experiments, in start order."""

    model_name: str
    production_version: str | None
    experiments: list[ExperimentRoutePublic]


class RoutesPublic(RoutingStatus):
    """Body of ``GET /v1/routes``: the routing status and the table, by model name."""

    models: list[ModelRoutesPublic]


class BreakerPublic(_Public):
    """One scorer endpoint's breaker (``GET /v1/breakers``)."""

    endpoint: str
    state: Literal["closed", "open", "half_open"]
    calls: int
    failures: int
    slow: int
    probes_admitted: int
    open_remaining_s: float
    in_flight: int
    """Calls to the endpoint in flight now."""


def create_app(
    pool: ScorerPool,
    routes: Callable[[], RoutingTable],
    *,
    routing_status: Callable[[], RoutingStatus],
) -> FastAPI:
    """The gateway's HTTP app.

    Ready as soon as it listens: the gateway answers every valid call (fallbacks
    included), with or without NATS and scorers; the breakers say how the scorers are.
    """
    app = create_http_app(service="gateway", readiness=Readiness("gateway"))
    router = APIRouter(prefix="/v1")

    @router.get("/routes", response_model=RoutesPublic)
    async def list_routes() -> RoutesPublic:
        """The routing table: production version and running experiments per model."""
        status = routing_status()
        models = [ModelRoutesPublic.model_validate(m) for m in routes().snapshot()]
        return RoutesPublic(**status.model_dump(), models=models)

    @router.get("/breakers", response_model=list[BreakerPublic])
    async def list_breakers() -> list[BreakerPublic]:
        """Each scorer endpoint's breaker: state, window counts, calls in flight."""
        return [
            BreakerPublic.model_validate(
                {**asdict(endpoint.breaker.snapshot()), "in_flight": endpoint.in_flight}
            )
            for endpoint in pool.endpoints
        ]

    app.include_router(router)
    return app
