"""HTTP: ``/healthz``, ``/readyz``, ``/metrics`` and ``GET /v1/models``."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict

from hindsight.common.errors import UnavailableError
from hindsight.common.http import Readiness, create_http_app
from hindsight.scorer.domain.deployments import Stage
from hindsight.scorer.domain.models import LoadedModel, ModelStore

__all__ = ["LoadedModelPublic", "create_app"]


class LoadedModelPublic(BaseModel):
    """One loaded model version, as ``GET /v1/models`` lists it."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    stage: Stage
    default: bool
    """Whether calls that name no version get this one."""
    sha256: str
    artifact_uri: str
    feature_count: int
    loaded_at: datetime
    """UTC, written with ``Z``."""

    @classmethod
    def of(cls, model: LoadedModel, *, default: bool) -> LoadedModelPublic:
        """The public view of ``model``."""
        return cls(
            model_name=model.name,
            version=model.version,
            stage=model.deployment.stage,
            default=default,
            sha256=model.deployment.sha256,
            artifact_uri=model.deployment.artifact_uri,
            feature_count=model.features.width,
            loaded_at=model.loaded_at.astimezone(UTC),
        )


def create_app(store: ModelStore) -> FastAPI:
    """The scorer's HTTP app: ready once at least one model is loaded."""
    readiness = Readiness("scorer")

    async def models_loaded() -> None:
        if store.empty:
            raise UnavailableError("no model loaded yet")

    readiness.register("models", models_loaded)
    app = create_http_app(service="scorer", readiness=readiness)
    router = APIRouter(prefix="/v1")

    @router.get("/models", response_model=list[LoadedModelPublic])
    async def list_models() -> list[LoadedModelPublic]:
        """What is loaded: name, version, stage, sha256, loaded_at, whether it is the default."""
        return [
            LoadedModelPublic.of(m, default=store.default_version(m.name) == m.version)
            for m in store.loaded()
        ]

    app.include_router(router)
    return app
