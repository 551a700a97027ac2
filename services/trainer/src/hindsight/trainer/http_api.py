"""HTTP: /healthz /readyz /metrics plus the runs API (POST needs the admin bearer token).

Every route declares its body and its response model, so ``/openapi.json`` describes what
goes over the wire. A run's times are written as ``datetime.isoformat()`` (``+00:00``), as
this API always wrote them; the stats' times by pydantic (``Z``), as they always were.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from hindsight.common.http import IsoDatetime, Readiness, bearer_auth, create_http_app
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.runs import RunService
from hindsight.trainer.storage import (
    DataStats,
    RunMode,
    RunStatus,
    RunSummary,
    Storage,
    TrainingRun,
)

__all__ = ["RunAccepted", "RunCreate", "RunPublic", "RunSummaryPublic", "create_app"]


class RunCreate(BaseModel):
    """Body of POST /v1/runs."""

    model_name: str | None = Field(default=None, description="Default: the trainer's model.")
    mode: Literal["full", "incremental"] = "full"
    reason: str | None = None
    requested_by: str | None = None


class RunAccepted(BaseModel):
    """Answer of POST /v1/runs: the run started (``running``) or why it was ``skipped``."""

    model_config = ConfigDict(frozen=True)

    training_run_id: str
    status: RunStatus
    model_name: str
    mode: RunMode
    error: str | None


class RunPublic(TrainingRun):
    """A run with its metrics and report (GET /v1/runs/{run_id})."""

    created_at: IsoDatetime
    finished_at: IsoDatetime | None
    training_run_id: str
    """The run id again, under the name the events use."""

    @classmethod
    def of_run(cls, run: TrainingRun) -> RunPublic:
        """The public view of ``run``."""
        return cls(**run.model_dump(), training_run_id=run.run_id)


class RunSummaryPublic(RunSummary):
    """A run in the list (GET /v1/runs): its headline metrics, no report."""

    created_at: IsoDatetime
    finished_at: IsoDatetime | None
    training_run_id: str
    """The run id again, under the name the events use."""

    @classmethod
    def of_summary(cls, run: RunSummary) -> RunSummaryPublic:
        """The public view of ``run``."""
        return cls(**run.model_dump(), training_run_id=run.run_id)


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
