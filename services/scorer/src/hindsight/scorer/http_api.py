"""HTTP: ``/healthz``, ``/readyz``, ``/metrics`` and ``GET /v1/models``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI

from hindsight.common.errors import UnavailableError
from hindsight.common.http import Readiness, create_http_app
from hindsight.scorer.domain.models import ModelStore

__all__ = ["create_app"]


def create_app(store: ModelStore, *, extra_status: dict[str, Any] | None = None) -> FastAPI:
    """The scorer's HTTP app: ready once at least one model is loaded."""
    readiness = Readiness("scorer")

    async def models_loaded() -> None:
        if store.empty:
            raise UnavailableError("no model loaded yet")

    readiness.register("models", models_loaded)
    app = create_http_app(service="scorer", readiness=readiness)
    router = APIRouter(prefix="/v1")

    @router.get("/models")
    async def list_models() -> list[dict[str, Any]]:
        """What is loaded: name, version, stage, sha256, loaded_at, whether it is the default."""
        return [
            {
                "model_name": m.name,
                "version": m.version,
                "stage": m.deployment.stage,
                "default": store.default_version(m.name) == m.version,
                "sha256": m.deployment.sha256,
                "artifact_uri": m.deployment.artifact_uri,
                "feature_count": m.features.width,
                "loaded_at": m.loaded_at.isoformat().replace("+00:00", "Z"),
            }
            for m in store.loaded()
        ]

    app.include_router(router)
    return app
