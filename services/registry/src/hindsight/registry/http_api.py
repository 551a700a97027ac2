"""The registry's HTTP admin API (GET open, writes behind the bearer token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, SecretStr

from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.common.http import bearer_auth
from hindsight.registry.domain import ExperimentKind, Stage
from hindsight.registry.evaluation_reads import evaluation
from hindsight.registry.experiments import Experiments
from hindsight.registry.service import Registry

__all__ = [
    "API_ACTOR",
    "ArchiveRequest",
    "ExperimentAction",
    "ExperimentRequest",
    "PromoteRequest",
    "RollbackRequest",
    "build_router",
]

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


class ExperimentRequest(BaseModel):
    """Body of POST /v1/experiments."""

    model_name: str = Field(min_length=1, max_length=200)
    kind: Literal["canary", "ab", "shadow"]
    candidate_version: str = Field(min_length=1, max_length=200)
    candidate_share: float | None = Field(default=None, gt=0, lt=1)
    """Canary default 0.1, A/B default 0.5; ignored for shadow."""
    min_samples_per_arm: int = Field(default=200, ge=2)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    auto_promote: bool | None = None
    """Default: HINDSIGHT_REGISTRY_AUTO_PROMOTE_EXPERIMENTS."""
    reason: str | None = Field(default=None, max_length=2000)


class ExperimentAction(BaseModel):
    """Optional body of POST /v1/experiments/{id}/complete|cancel|approve."""

    reason: str | None = Field(default=None, min_length=1, max_length=2000)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in {"headline", "card"}}
    out["metrics"] = row.get("headline") or {}
    out["recommendation"] = (row.get("headline") or {}).get("recommendation")
    if "card" in row:
        out["card"] = row["card"]
    return out


MAX_EVALUATION_SPAN = timedelta(days=400)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def evaluation_window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``[from, to)`` of an evaluation request: default the last 30 days, at most 400."""
    end = _utc(end) if end else datetime.now(UTC)
    start = _utc(start) if start else end - timedelta(days=30)
    if start >= end:
        raise InvalidInputError("must be before `to`", field="from")
    if end - start > MAX_EVALUATION_SPAN:
        raise InvalidInputError("the window is longer than 400 days", field="from")
    return start, end


def build_router(
    registry: Registry, experiments: Experiments, *, admin_token: SecretStr | None
) -> APIRouter:
    """Routes of DESIGN.md's registry API over ``registry``, plus the experiments API."""
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

    @router.get("/models/{name}/evaluation")
    async def model_evaluation(
        name: str,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
    ) -> dict[str, Any]:
        """Prediction/outcome aggregates of a model over ``[from, to)`` (see evaluation_reads)."""
        window = evaluation_window(start, end)
        if not await registry.storage.version_count(name):
            raise NotFoundError(f"model {name} has no versions")
        return await evaluation(registry.storage.db.pool, name, *window)

    @router.get("/models/{name}/audit")
    async def audit(name: str) -> list[dict[str, Any]]:
        return await registry.audit(name)

    @router.get("/deployments")
    async def deployments() -> list[dict[str, Any]]:
        return await registry.storage.deployments()

    @router.get("/status")
    async def status() -> dict[str, Any]:
        return await registry.status()

    @router.post("/experiments", dependencies=auth, status_code=201)
    async def start_experiment(body: ExperimentRequest) -> dict[str, Any]:
        return await experiments.start(
            model_name=body.model_name,
            kind=ExperimentKind(body.kind),
            candidate_version=body.candidate_version,
            candidate_share=body.candidate_share,
            min_samples_per_arm=body.min_samples_per_arm,
            alpha=body.alpha,
            auto_promote=body.auto_promote,
            actor=API_ACTOR,
            reason=body.reason,
        )

    @router.get("/experiments")
    async def list_experiments(
        model_name: str | None = Query(default=None),
        state: str | None = Query(default=None),
    ) -> list[dict[str, Any]]:
        return await experiments.list_experiments(model_name=model_name, state=state)

    @router.get("/experiments/{experiment_id}")
    async def get_experiment(experiment_id: str) -> dict[str, Any]:
        return await experiments.get(experiment_id)

    @router.post("/experiments/{experiment_id}/complete", dependencies=auth)
    async def complete_experiment(
        experiment_id: str, body: ExperimentAction | None = None
    ) -> dict[str, Any]:
        reason = (body.reason if body else None) or "completed on request"
        return await experiments.complete(experiment_id, actor=API_ACTOR, reason=reason)

    @router.post("/experiments/{experiment_id}/cancel", dependencies=auth)
    async def cancel_experiment(
        experiment_id: str, body: ExperimentAction | None = None
    ) -> dict[str, Any]:
        reason = (body.reason if body else None) or "cancelled on request"
        return await experiments.cancel(experiment_id, actor=API_ACTOR, reason=reason)

    @router.post("/experiments/{experiment_id}/approve", dependencies=auth)
    async def approve_experiment(
        experiment_id: str, body: ExperimentAction | None = None
    ) -> dict[str, Any]:
        reason = (body.reason if body else None) or "approved"
        return await experiments.approve(experiment_id, actor=API_ACTOR, reason=reason)

    @router.get("/degradation")
    async def degradation() -> dict[str, Any]:
        return {
            "production": await experiments.check_degradation(apply=False),
            "rollbacks": await experiments.storage.degradation_rollbacks(),
        }

    return router
