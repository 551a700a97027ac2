"""The registry's HTTP admin API (GET open, writes behind the bearer token)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, SecretStr

from hindsight.common.http import bearer_auth
from hindsight.registry.domain import Stage
from hindsight.registry.service import Registry

__all__ = ["API_ACTOR", "ArchiveRequest", "PromoteRequest", "RollbackRequest", "build_router"]

# The bearer token is one shared secret, so every API call is the administrator's.
API_ACTOR = "api:admin"


class PromoteRequest(BaseModel):
    """Body of POST .../promote."""

    reason: str = Field(min_length=1, max_length=2000)
    force: bool = False
    stage: Literal["production", "staging"] = "production"


class RollbackRequest(BaseModel):
    """Body of POST .../rollback."""

    reason: str = Field(min_length=1, max_length=2000)


class ArchiveRequest(BaseModel):
    """Body of POST .../archive (optional)."""

    reason: str = Field(default="archived by admin", min_length=1, max_length=2000)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in {"headline", "card"}}
    out["metrics"] = row.get("headline") or {}
    out["recommendation"] = (row.get("headline") or {}).get("recommendation")
    if "card" in row:
        out["card"] = row["card"]
    return out


def build_router(registry: Registry, *, admin_token: SecretStr | None) -> APIRouter:
    """Routes of DESIGN.md's registry API over ``registry``."""
    router = APIRouter(prefix="/v1")
    auth = [Depends(bearer_auth(admin_token))]

    @router.get("/models")
    async def list_models() -> list[dict[str, Any]]:
        return await registry.storage.models()

    @router.get("/models/{name}/versions")
    async def list_versions(name: str) -> list[dict[str, Any]]:
        return [_public(r) for r in await registry.versions(name)]

    @router.get("/models/{name}/versions/{version}")
    async def get_version(name: str, version: str) -> dict[str, Any]:
        return _public(await registry.version(name, version))

    @router.post("/models/{name}/versions/{version}/promote", dependencies=auth)
    async def promote(name: str, version: str, body: PromoteRequest) -> dict[str, Any]:
        row = await registry.promote(
            name,
            version,
            actor=API_ACTOR,
            reason=body.reason,
            force=body.force,
            stage=Stage(body.stage),
        )
        return _public(row)

    @router.post("/models/{name}/rollback", dependencies=auth)
    async def rollback(name: str, body: RollbackRequest) -> dict[str, Any]:
        return _public(await registry.rollback(name, actor=API_ACTOR, reason=body.reason))

    @router.post("/models/{name}/versions/{version}/archive", dependencies=auth)
    async def archive(
        name: str, version: str, body: ArchiveRequest | None = None
    ) -> dict[str, Any]:
        reason = (body or ArchiveRequest()).reason
        return _public(await registry.archive(name, version, actor=API_ACTOR, reason=reason))

    @router.get("/models/{name}/audit")
    async def audit(name: str) -> list[dict[str, Any]]:
        return await registry.audit(name)

    @router.get("/deployments")
    async def deployments() -> list[dict[str, Any]]:
        return await registry.storage.deployments()

    @router.get("/status")
    async def status() -> dict[str, Any]:
        return await registry.status()

    return router
