"""HTTP: /healthz /readyz /metrics plus the runs API (POST needs the admin bearer token)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hindsight.common.http import Readiness, bearer_auth, create_http_app
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.domain.jsonsafe import jsonable
from hindsight.trainer.runs import RunService
from hindsight.trainer.storage import Storage

__all__ = ["RunCreate", "create_app"]


class RunCreate(BaseModel):
    """Body of POST /v1/runs."""

    model_name: str | None = Field(default=None, description="Default: the trainer's model.")
    mode: Literal["full", "incremental"] = "full"
    reason: str | None = None
    requested_by: str | None = None


def create_app(
    settings: TrainerSettings, runs: RunService, storage: Storage, readiness: Readiness
) -> FastAPI:
    """The trainer's FastAPI app."""
    app = create_http_app(service="trainer", readiness=readiness)
    router = APIRouter(prefix="/v1")

    @router.post(
        "/runs", status_code=202, dependencies=[Depends(bearer_auth(settings.admin_token))]
    )
    async def create_run(body: RunCreate) -> JSONResponse:
        run = await runs.request(
            model_name=body.model_name,
            mode=body.mode,
            trigger="api",
            reason=body.reason,
            requested_by=body.requested_by or "api",
        )
        return JSONResponse(
            jsonable(
                {
                    "training_run_id": run["run_id"],
                    "status": run["status"],
                    "model_name": run["model_name"],
                    "mode": run["mode"],
                    "error": run.get("error"),
                }
            ),
            status_code=202,
        )

    @router.get("/runs")
    async def list_runs(
        model_name: str | None = None, limit: int = Query(default=50, ge=1, le=500)
    ) -> list[dict[str, Any]]:
        return [_public(r) for r in await storage.list_runs(model_name=model_name, limit=limit)]

    @router.get("/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        return _public(await runs.get(run_id))

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return jsonable(await storage.stats())  # type: ignore[no-any-return]

    app.include_router(router)
    return app


def _public(run: dict[str, Any]) -> dict[str, Any]:
    out = dict(run)
    out["training_run_id"] = out["run_id"]
    for key in ("created_at", "finished_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return jsonable(out)  # type: ignore[no-any-return]
