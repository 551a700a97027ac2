"""HTTP: /healthz /readyz /metrics plus the runs API (POST needs the admin bearer token).

Every route declares its body and its response model, so ``/openapi.json`` describes what
goes over the wire. A run's times are written as ``datetime.isoformat()`` (``+00:00``), as
this API always wrote them; the stats' times by pydantic (``Z``), as they always were. The
runs' bodies and answers are defined in :mod:`hindsight.common.trainer_api` (the operator CLI
reads them too) and re-exported here.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Query

from hindsight.common.http import Readiness, bearer_auth, create_http_app
from hindsight.common.trainer_api import RunAccepted, RunCreate, RunPublic, RunSummaryPublic
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.runs import RunService
from hindsight.trainer.storage import DataStats, Storage

__all__ = ["RunAccepted", "RunCreate", "RunPublic", "RunSummaryPublic", "create_app"]


def create_app(
    settings: TrainerSettings, runs: RunService, storage: Storage, readiness: Readiness
) -> FastAPI:
    """The trainer's FastAPI app."""
    app = create_http_app(service="trainer", readiness=readiness)
    router = APIRouter(prefix="/v1")

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

    app.include_router(router)
    return app
