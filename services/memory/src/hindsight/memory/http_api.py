"""HTTP: /healthz /readyz /metrics plus search, records, collections, docs, prompts, admin."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask

from hindsight.common.errors import InvalidInputError
from hindsight.common.http import Readiness, bearer_auth, create_http_app
from hindsight.memory.backup import BackupService
from hindsight.memory.config import MemorySettings
from hindsight.memory.documents import DocumentIngestor, PromptCreate, extract_text
from hindsight.memory.domain.records import LOGICAL_COLLECTIONS, format_timestamp
from hindsight.memory.retention import Retention
from hindsight.memory.search import Searcher, public_record
from hindsight.memory.storage import Storage

__all__ = ["RestoreArchived", "create_app"]

SERVICE = "memory"


class RestoreArchived(BaseModel):
    """Body of POST /v1/retention/restore: ids to restore, or all archived records."""

    vector_ids: list[str] | None = None


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"not valid JSON: {exc}", field="body") from exc


def _validate(model: type[BaseModel], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidInputError(error["msg"], field=loc) from exc


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = public_record(row)
    out["timestamp"] = format_timestamp(row["timestamp"])
    out["archived_at"] = format_timestamp(row.get("archived_at"))
    return out


def create_app(
    settings: MemorySettings,
    *,
    storage: Storage,
    searcher: Searcher,
    documents: DocumentIngestor,
    retention: Retention,
    backups: BackupService,
    readiness: Readiness,
) -> FastAPI:
    """The memory service's FastAPI app."""
    app = create_http_app(service=SERVICE, readiness=readiness)
    admin = [Depends(bearer_auth(settings.admin_token))]
    router = APIRouter(prefix="/v1")

    @app.exception_handler(InvalidInputError)
    async def bad_input(_: Request, exc: InvalidInputError) -> JSONResponse:
        # The memory API answers bad input with 400 naming the field (common brief).
        return JSONResponse(
            {"error": type(exc).__name__, "message": exc.reason, "field": exc.field},
            status_code=400,
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path")]
        return JSONResponse(
            {
                "error": "InvalidInputError",
                "message": str(error.get("msg")),
                "field": ".".join(loc) or None,
            },
            status_code=400,
        )

    @router.post("/search")
    async def search(request: Request) -> dict[str, Any]:
        return await searcher.search(await _json_body(request))

    @router.get("/records")
    async def records(
        run_id: str | None = None,
        trade_id: str | None = None,
        collection: str | None = None,
        include_archived: bool = False,
        limit: int = Query(default=1000, ge=1, le=10000),
        offset: int = Query(default=0, ge=0),
    ) -> dict[str, Any]:
        if run_id is None and trade_id is None:
            raise InvalidInputError("give run_id or trade_id", field="run_id")
        if collection is not None and collection not in LOGICAL_COLLECTIONS:
            raise InvalidInputError(f"unknown collection {collection!r}", field="collection")
        rows = await storage.find(
            run_id=run_id,
            trade_id=trade_id,
            collection=collection,
            include_archived=include_archived,
            limit=limit,
            offset=offset,
        )
        return {"records": [_public(r) for r in rows], "count": len(rows)}

    @router.get("/collections")
    async def collections() -> dict[str, Any]:
        rows = await storage.counts()
        logical: dict[str, dict[str, int]] = {
            name: {"records": 0, "archived": 0} for name in LOGICAL_COLLECTIONS
        }
        physical = []
        for row in rows:
            totals = logical.setdefault(row["collection"], {"records": 0, "archived": 0})
            totals["records"] += int(row["records"])
            totals["archived"] += int(row["archived"])
            physical.append(
                {
                    "name": row["physical"],
                    "collection": row["collection"],
                    "modality": row["modality"],
                    "model": row["model"],
                    "records": int(row["records"]),
                    "archived": int(row["archived"]),
                }
            )
        return {
            "collections": [{"name": k, **v} for k, v in logical.items()],
            "physical": physical,
        }

    @router.post("/docs", status_code=201, dependencies=admin)
    async def add_doc(
        file: UploadFile | None = File(default=None),  # noqa: B008
        text: str | None = Form(default=None),
        title: str | None = Form(default=None),
    ) -> dict[str, Any]:
        if (file is None) == (text is None):
            raise InvalidInputError("upload a file or send text (one of them)", field="file")
        if file is not None:
            data = await file.read(settings.max_upload_bytes + 1)
            if len(data) > settings.max_upload_bytes:
                raise InvalidInputError(
                    f"larger than {settings.max_upload_bytes} bytes", field="file"
                )
            content = extract_text(data, filename=file.filename, content_type=file.content_type)
            name = file.filename or None
        else:
            assert text is not None
            content, name = text, None
        doc_title = (title or name or "").strip()
        if not doc_title:
            raise InvalidInputError("a title is needed for text without a file", field="title")
        return await documents.add_document(text=content, title=doc_title, file_name=name)

    @router.post("/prompts", status_code=201, dependencies=admin)
    async def add_prompt(request: Request) -> dict[str, Any]:
        body = _validate(PromptCreate, await _json_body(request))
        return await documents.add_prompt(body)

    @router.get("/prompts")
    async def list_prompts(
        trade_id: str | None = None, limit: int = Query(default=50, ge=1, le=1000)
    ) -> dict[str, Any]:
        rows = await storage.list_prompts(limit=limit, trade_id=trade_id)
        return {"prompts": [_public(r) for r in rows], "count": len(rows)}

    @router.post("/retention/run", dependencies=admin)
    async def run_retention() -> dict[str, Any]:
        return await retention.run()

    @router.post("/retention/restore", dependencies=admin)
    async def restore_archived(request: Request) -> dict[str, Any]:
        raw = await request.body()
        body = _validate(RestoreArchived, json.loads(raw) if raw.strip() else {})
        return await retention.restore(body.vector_ids)

    @router.post("/backup", dependencies=admin)
    async def backup() -> FileResponse:
        fd, name = tempfile.mkstemp(prefix="memory-backup-", suffix=".tar.gz")
        os.close(fd)
        path = Path(name)
        try:
            manifest = await backups.backup(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return FileResponse(
            path,
            media_type="application/gzip",
            filename=f"memory-backup-{manifest['created_at'].replace(':', '')}.tar.gz",
            headers={"X-Hindsight-Backup-Counts": json.dumps(manifest["counts"])},
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    @router.post("/restore", dependencies=admin)
    async def restore(request: Request) -> dict[str, Any]:
        fd, name = tempfile.mkstemp(prefix="memory-restore-", suffix=".tar.gz")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in request.stream():
                    handle.write(chunk)
            return await backups.restore(path)
        finally:
            path.unlink(missing_ok=True)

    app.include_router(router)
    return app
