"""HTTP: /healthz /readyz /metrics plus the runs and data-spec APIs (POST and PUT need the
admin bearer token).

Every route declares its body and its response model, so ``/openapi.json`` describes what
goes over the wire. A run's times are written as ``datetime.isoformat()`` (``+00:00``), as
this API always wrote them; the stats' times by pydantic (``Z``), as they always were. The
runs' bodies and answers are defined in :mod:`hindsight.common.trainer_api` (the operator CLI
reads them too) and re-exported here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Response

from hindsight.common.http import Readiness, bearer_auth, create_http_app
from hindsight.common.trainer_api import RunAccepted, RunCreate, RunPublic, RunSummaryPublic
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.data_specs import DataSpecCatalog, DataSpecCreate, DataSpecPublic
from hindsight.trainer.runs import RunService
from hindsight.trainer.storage import DataStats, Storage

__all__ = ["RunAccepted", "RunCreate", "RunPublic", "RunSummaryPublic", "create_app"]


API_ACTOR = "api"
"""Who registered a data spec over HTTP (the admin token names no one)."""


def create_app(
    settings: TrainerSettings,
    runs: RunService,
    storage: Storage,
    readiness: Readiness,
    *,
    data_specs: DataSpecCatalog | None = None,
) -> FastAPI:
    """The trainer's FastAPI app (the data-spec routes when ``data_specs`` is given)."""
    app = create_http_app(service="trainer", readiness=readiness)
    router = APIRouter(prefix="/v1")
    auth = [Depends(bearer_auth(settings.admin_token))]

    @router.post(
        "/runs",
        status_code=202,
        dependencies=[Depends(bearer_auth(settings.admin_token))],
        response_model=RunAccepted,
    )
    async def create_run(body: RunCreate) -> RunAccepted:
        run = await runs.request(
            model_name=body.model_name,
            mode=body.mode,
            trigger="api",
            reason=body.reason,
            requested_by=body.requested_by or "api",
        )
        return RunAccepted(
            training_run_id=run.run_id,
            status=run.status,
            model_name=run.model_name,
            mode=run.mode,
            error=run.error,
        )

    @router.get("/runs", response_model=list[RunSummaryPublic])
    async def list_runs(
        model_name: str | None = None, limit: int = Query(default=50, ge=1, le=500)
    ) -> list[RunSummaryPublic]:
        rows = await storage.list_runs(model_name=model_name, limit=limit)
        return [RunSummaryPublic.of_summary(r) for r in rows]

    @router.get("/runs/{run_id}", response_model=RunPublic)
    async def get_run(run_id: str) -> RunPublic:
        return RunPublic.of_run(await runs.get(run_id))

    @router.get("/stats", response_model=DataStats)
    async def stats() -> DataStats:
        return await storage.stats()

    if data_specs is not None:
        _data_spec_routes(router, data_specs, auth=auth)
    app.include_router(router)
    return app


ModelName = Path(min_length=1, max_length=128, description="The model the spec scopes.")


def _data_spec_routes(router: APIRouter, catalog: DataSpecCatalog, *, auth: list[Any]) -> None:
    @router.put(
        "/data-specs/{model_name}",
        dependencies=auth,
        response_model=DataSpecPublic,
        responses={201: {"model": DataSpecPublic, "description": "Registered now"}},
    )
    async def register_data_spec(
        body: DataSpecCreate, response: Response, model_name: str = ModelName
    ) -> DataSpecPublic:
        """Register a data spec version once: 201 new, 200 the same again, 409 another
        content under that version or a version not after the newest."""
        record, created = await catalog.register(model_name, body, actor=API_ACTOR)
        response.status_code = 201 if created else 200
        return record

    @router.get("/data-specs/{model_name}", response_model=DataSpecPublic)
    async def get_data_spec(model_name: str = ModelName) -> DataSpecPublic:
        """The spec the model's runs train on (its newest version, else the settings')."""
        return catalog.describe(model_name)

    @router.get("/data-specs", response_model=list[DataSpecPublic])
    async def list_data_specs() -> list[DataSpecPublic]:
        return catalog.all()
