"""HTTP: ``/healthz``, ``/readyz``, ``/metrics``, ``GET /v1/models`` and ``GET /v1/families``."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict

from hindsight.common.errors import UnavailableError
from hindsight.common.http import Readiness, create_http_app
from hindsight.scorer.domain.deployments import Stage
from hindsight.scorer.domain.families import FamilyStore, LoadedFamily
from hindsight.scorer.domain.models import LoadedModel, ModelStore

__all__ = ["LoadedFamilyPublic", "LoadedModelPublic", "MemberPublic", "create_app"]


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


class MemberPublic(BaseModel):
    """One member of a loaded family release."""

    model_config = ConfigDict(frozen=True)

    name: str
    head: str
    version: str
    sha256: str
    feature_count: int


class LoadedFamilyPublic(BaseModel):
    """One loaded family release, as ``GET /v1/families`` lists it."""

    model_config = ConfigDict(frozen=True)

    family: str
    version: str
    stage: Stage
    default: bool
    """Whether ``Predict`` calls that pin no ``family_version`` get this release."""
    sha256: str
    """sha256 of the release's ``metrics.json``."""
    artifact_uri: str
    entry_routing: dict[str, str]
    members: list[MemberPublic]
    loaded_at: datetime

    @classmethod
    def of(cls, release: LoadedFamily, *, default: bool) -> LoadedFamilyPublic:
        """The public view of ``release``."""
        return cls(
            family=release.name,
            version=release.version,
            stage=release.deployment.stage,
            default=default,
            sha256=release.deployment.sha256,
            artifact_uri=release.deployment.artifact_uri,
            entry_routing={str(k): v for k, v in release.card.entry_routing.items()},
            members=[
                MemberPublic(
                    name=m.name,
                    head=m.head,
                    version=m.version,
                    sha256=m.sha256,
                    feature_count=len(m.features),
                )
                for m in release.card.members
            ],
            loaded_at=release.loaded_at.astimezone(UTC),
        )


def create_app(store: ModelStore, families: FamilyStore | None = None) -> FastAPI:
    """The scorer's HTTP app: ready once at least one model or family release is loaded."""
    readiness = Readiness("scorer")

    async def models_loaded() -> None:
        if store.empty and (families is None or families.empty):
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

    @router.get("/families", response_model=list[LoadedFamilyPublic])
    async def list_families() -> list[LoadedFamilyPublic]:
        """Loaded family releases: stage, sha256, routing, members with their versions."""
        if families is None:
            return []
        return [
            LoadedFamilyPublic.of(r, default=families.default_version(r.name) == r.version)
            for r in families.loaded()
        ]

    app.include_router(router)
    return app
