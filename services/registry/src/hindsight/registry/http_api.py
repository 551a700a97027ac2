"""The registry's HTTP admin API (GET open, writes behind the bearer token).

Every route declares its body and its response model, so ``/openapi.json`` describes what
goes over the wire. Responses are rendered by ``JSONResponse`` (``json.dumps``), not by
pydantic's JSON writer, so numbers keep the text they always had (``1e-05``, not
``1e-5``); times are written by :data:`~hindsight.registry.storage.datetime`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import SecretStr

from hindsight.common.errors import InvalidInputError
from hindsight.common.feature_schema import FeatureSchema
from hindsight.common.http import bearer_auth
from hindsight.registry.degradation import DegradationMonitor, DegradationReport
from hindsight.registry.domain import ExperimentKind, Stage
from hindsight.registry.experiments import ExperimentDetail, Experiments
from hindsight.registry.feature_schemas import FeatureSchemaCatalog
from hindsight.registry.schemas import (
    ArchiveRequest,
    ExperimentAction,
    ExperimentCreate,
    FeatureSchemaCreate,
    PromoteRequest,
    RollbackRequest,
    VersionDetail,
    VersionPublic,
)
from hindsight.registry.service import Registry, RegistryStatus
from hindsight.registry.storage import (
    AuditRecord,
    Deployment,
    EvaluationReport,
    ExperimentRecord,
    FeatureSchemaRecord,
    ModelSummary,
)

__all__ = ["API_ACTOR", "MAX_EVALUATION_SPAN", "build_router", "evaluation_window"]

# The bearer token is one shared secret, so every API call is the administrator's.
API_ACTOR = "api:admin"

MAX_EVALUATION_SPAN = timedelta(days=400)

SchemaVersion = Annotated[int, Path(ge=1, le=2**31 - 1)]
"""A ``feature_schema_version`` in a path: a positive PostgreSQL ``integer``."""


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
    registry: Registry,
    experiments: Experiments,
    monitor: DegradationMonitor,
    feature_schemas: FeatureSchemaCatalog,
    *,
    admin_token: SecretStr | None,
) -> APIRouter:
    """The registry API (docs/design.md) over ``registry``, with experiments, degradation and
    feature schemas."""
    router = APIRouter(prefix="/v1")
    auth = [Depends(bearer_auth(admin_token))]

    @router.get("/models", response_model=list[ModelSummary])
    async def list_models() -> list[ModelSummary]:
        return await registry.models()

    @router.get("/models/{name}/versions", response_model=list[VersionPublic])
    async def list_versions(name: str) -> list[VersionPublic]:
        return [VersionPublic.of(r) for r in await registry.versions(name)]

    @router.get("/models/{name}/versions/{version}", response_model=VersionDetail)
    async def get_version(name: str, version: str) -> VersionDetail:
        return VersionDetail.of_carded(await registry.version(name, version))

    @router.post(
        "/models/{name}/versions/{version}/promote",
        dependencies=auth,
        response_model=VersionDetail,
    )
    async def promote(name: str, version: str, body: PromoteRequest) -> VersionDetail:
        row = await registry.promote(
            name,
            version,
            actor=API_ACTOR,
            reason=body.reason,
            force=body.force,
            stage=Stage(body.stage),
        )
        return VersionDetail.of_carded(row)

    @router.post("/models/{name}/rollback", dependencies=auth, response_model=VersionDetail)
    async def rollback(name: str, body: RollbackRequest) -> VersionDetail:
        row = await registry.rollback(name, actor=API_ACTOR, reason=body.reason)
        return VersionDetail.of_carded(row)

    @router.post(
        "/models/{name}/versions/{version}/archive",
        dependencies=auth,
        response_model=VersionDetail,
    )
    async def archive(name: str, version: str, body: ArchiveRequest | None = None) -> VersionDetail:
        reason = (body or ArchiveRequest()).reason
        row = await registry.archive(name, version, actor=API_ACTOR, reason=reason)
        return VersionDetail.of_carded(row)

    @router.get("/models/{name}/evaluation", response_model=EvaluationReport)
    async def model_evaluation(
        name: str,
        start: Annotated[datetime | None, Query(alias="from")] = None,
        end: Annotated[datetime | None, Query(alias="to")] = None,
    ) -> EvaluationReport:
        """Prediction/outcome aggregates of a model over ``[from, to)``."""
        return await registry.evaluation(name, *evaluation_window(start, end))

    @router.get("/models/{name}/audit", response_model=list[AuditRecord])
    async def audit(name: str) -> list[AuditRecord]:
        return await registry.audit(name)

    @router.get("/deployments", response_model=list[Deployment])
    async def deployments() -> list[Deployment]:
        return await registry.deployments()

    @router.get("/status", response_model=RegistryStatus)
    async def status() -> RegistryStatus:
        return await registry.status()

    @router.post(
        "/experiments", dependencies=auth, status_code=201, response_model=ExperimentDetail
    )
    async def start_experiment(body: ExperimentCreate) -> ExperimentDetail:
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

    @router.get("/experiments", response_model=list[ExperimentRecord])
    async def list_experiments(
        model_name: str | None = Query(default=None),
        state: str | None = Query(default=None),
    ) -> list[ExperimentRecord]:
        return await experiments.list_experiments(model_name=model_name, state=state)

    @router.get("/experiments/{experiment_id}", response_model=ExperimentDetail)
    async def get_experiment(experiment_id: str) -> ExperimentDetail:
        return await experiments.get(experiment_id)

    @router.post(
        "/experiments/{experiment_id}/complete",
        dependencies=auth,
        response_model=ExperimentDetail,
    )
    async def complete_experiment(
        experiment_id: str, body: ExperimentAction | None = None
    ) -> ExperimentDetail:
        reason = (body.reason if body else None) or "completed on request"
        return await experiments.complete(experiment_id, actor=API_ACTOR, reason=reason)

    @router.post(
        "/experiments/{experiment_id}/cancel", dependencies=auth, response_model=ExperimentDetail
    )
    async def cancel_experiment(
        experiment_id: str, body: ExperimentAction | None = None
    ) -> ExperimentDetail:
        reason = (body.reason if body else None) or "cancelled on request"
        return await experiments.cancel(experiment_id, actor=API_ACTOR, reason=reason)

    @router.post(
        "/experiments/{experiment_id}/approve", dependencies=auth, response_model=ExperimentDetail
    )
    async def approve_experiment(
        experiment_id: str, body: ExperimentAction | None = None
    ) -> ExperimentDetail:
        reason = (body.reason if body else None) or "approved"
        return await experiments.approve(experiment_id, actor=API_ACTOR, reason=reason)

    @router.get("/degradation", response_model=DegradationReport)
    async def degradation() -> DegradationReport:
        return await monitor.report()

    @router.put(
        "/feature-schemas/{version}",
        dependencies=auth,
        response_model=FeatureSchemaRecord,
        responses={201: {"model": FeatureSchemaRecord, "description": "Registered now"}},
    )
    async def register_feature_schema(
        version: SchemaVersion, body: FeatureSchemaCreate, response: Response
    ) -> FeatureSchemaRecord:
        """Register a feature schema once: 201 new, 200 the same again, 409 other features."""
        if body.version is not None and body.version != version:
            raise InvalidInputError(f"{body.version} is not the path's {version}", field="version")
        schema = FeatureSchema(version=version, features=body.features)
        record, created = await feature_schemas.register(schema, actor=API_ACTOR)
        response.status_code = 201 if created else 200
        return record

    @router.get("/feature-schemas/{version}", response_model=FeatureSchemaRecord)
    async def get_feature_schema(version: SchemaVersion) -> FeatureSchemaRecord:
        return await feature_schemas.get(version)

    @router.get("/feature-schemas", response_model=list[FeatureSchemaRecord])
    async def list_feature_schemas() -> list[FeatureSchemaRecord]:
        return await feature_schemas.all()

    return router
