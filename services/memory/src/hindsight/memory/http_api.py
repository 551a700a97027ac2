"""HTTP: /healthz /readyz /metrics plus search, records, collections, docs, prompts, admin.

Every route declares its body and its response model, so ``/openapi.json`` describes what
goes over the wire; the backup is a file (``application/gzip``) both ways. Bad input is
answered 400 with an :class:`~hindsight.common.http.ErrorBody` naming the field.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel
from pydantic_core import ErrorDetails
from starlette.background import BackgroundTask

from hindsight.common.errors import InvalidInputError
from hindsight.common.http import ErrorBody, Readiness, bearer_auth, create_http_app
from hindsight.memory.backup import BackupRestored, BackupService
from hindsight.memory.config import MemorySettings
from hindsight.memory.documents import (
    DocumentAdded,
    DocumentIngestor,
    PromptAdded,
    PromptCreate,
    extract_text,
)
from hindsight.memory.domain.records import LOGICAL_COLLECTIONS
from hindsight.memory.retention import ArchivedRestored, Retention, RetentionPass
from hindsight.memory.schemas import (
    CollectionsOverview,
    LogicalCollection,
    PhysicalCollectionCount,
    PromptList,
    RecordList,
    RecordPublic,
)
from hindsight.memory.search import Searcher, SearchRequest, SearchResults
from hindsight.memory.similarity import PatternStore, SimilarityQuery
from hindsight.memory.similarity.http import patterns_router
from hindsight.memory.storage import Storage

__all__ = ["RestoreArchived", "create_app"]

SERVICE = "memory"

_GZIP = {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}


class RestoreArchived(BaseModel):
    """Body of POST /v1/retention/restore: ids to restore, or all archived records."""

    vector_ids: list[str] | None = None


def _validation_error(exc: RequestValidationError) -> ErrorBody:
    """The first problem of a request, naming its field (``body`` for the body as a whole)."""
    errors = exc.errors()
    if not errors:
        return ErrorBody(error="InvalidInputError", message="invalid request", field=None)
    error: ErrorDetails = errors[0]
    place = error["loc"]
    message = error["msg"]
    if error["type"] == "json_invalid":
        # FastAPI keeps the document and the position: the decoder's own message, in full.
        reason = error.get("ctx", {}).get("error", message)
        if isinstance(exc.body, str) and isinstance(place[-1], int):
            reason = str(json.JSONDecodeError(reason, exc.body, place[-1]))
        message = f"not valid JSON: {reason}"
        return ErrorBody(error="InvalidInputError", message=message, field="body")
    if place == ("body",) and error["type"] == "missing":  # an empty body: not JSON either
        message = f"not valid JSON: {json.JSONDecodeError('Expecting value', '', 0)}"
    elif place == ("body",) and isinstance(error["input"], bytes):
        message = "not a JSON body: send it with content-type application/json"
    loc = [str(p) for p in place if p not in ("query", "body", "path")]
    field = ".".join(loc) or ("body" if place[:1] == ("body",) else None)
    return ErrorBody(error="InvalidInputError", message=message, field=field)


def create_app(
    settings: MemorySettings,
    *,
    storage: Storage,
    searcher: Searcher,
    documents: DocumentIngestor,
    retention: Retention,
    backups: BackupService,
    readiness: Readiness,
    patterns: PatternStore | None = None,
    nearest: SimilarityQuery | None = None,
) -> FastAPI:
    """The memory service's FastAPI app."""
    app = create_http_app(service=SERVICE, readiness=readiness)
    admin = [Depends(bearer_auth(settings.admin_token))]
    router = APIRouter(
        prefix="/v1",
        # A JSON body sent without a content type is read as JSON, as it always was (one
        # with another content type, e.g. form-encoded, is refused: 400 naming `body`).
        strict_content_type=False,
        responses={400: {"model": ErrorBody, "description": "Bad input, naming the field"}},
    )

    @app.exception_handler(InvalidInputError)
    async def bad_input(_: Request, exc: InvalidInputError) -> JSONResponse:
        # The memory API answers bad input with 400 naming the field (common brief).
        body = ErrorBody(error=type(exc).__name__, message=exc.reason, field=exc.field)
        return JSONResponse(body.model_dump(), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_error(exc).model_dump(), status_code=400)

    @router.post("/search", response_model=SearchResults)
    async def search(body: SearchRequest) -> SearchResults:
        return await searcher.search(body)

    @router.get("/records", response_model=RecordList)
    async def records(
        run_id: str | None = None,
        trade_id: str | None = None,
        collection: str | None = None,
        include_archived: bool = False,
        limit: int = Query(default=1000, ge=1, le=10000),
        offset: int = Query(default=0, ge=0),
    ) -> RecordList:
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
        return RecordList(records=[RecordPublic.of(r) for r in rows], count=len(rows))

    @router.get("/collections", response_model=CollectionsOverview)
    async def collections() -> CollectionsOverview:
        rows = await storage.counts()
        logical: dict[str, tuple[int, int]] = dict.fromkeys(LOGICAL_COLLECTIONS, (0, 0))
        for row in rows:
            records, archived = logical.get(row.collection, (0, 0))
            logical[row.collection] = (records + row.records, archived + row.archived)
        return CollectionsOverview(
            collections=[
                LogicalCollection(name=name, records=records, archived=archived)
                for name, (records, archived) in logical.items()
            ],
            physical=[
                PhysicalCollectionCount(
                    name=row.physical,
                    collection=row.collection,
                    modality=row.modality,
                    model=row.model,
                    records=row.records,
                    archived=row.archived,
                )
                for row in rows
            ],
        )

    @router.post("/docs", status_code=201, dependencies=admin, response_model=DocumentAdded)
    async def add_doc(
        file: UploadFile | None = File(default=None),  # noqa: B008
        text: str | None = Form(default=None),
        title: str | None = Form(default=None),
    ) -> DocumentAdded:
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

    @router.post("/prompts", status_code=201, dependencies=admin, response_model=PromptAdded)
    async def add_prompt(body: PromptCreate) -> PromptAdded:
        return await documents.add_prompt(body)

    @router.get("/prompts", response_model=PromptList)
    async def list_prompts(
        trade_id: str | None = None, limit: int = Query(default=50, ge=1, le=1000)
    ) -> PromptList:
        rows = await storage.list_prompts(limit=limit, trade_id=trade_id)
        return PromptList(prompts=[RecordPublic.of(r) for r in rows], count=len(rows))

    @router.post(
        "/retention/run",
        dependencies=admin,
        response_model=RetentionPass,
        response_model_exclude_unset=True,  # `archived` or `deleted`, by the mode
    )
    async def run_retention() -> RetentionPass:
        return await retention.run()

    @router.post("/retention/restore", dependencies=admin, response_model=ArchivedRestored)
    async def restore_archived(body: RestoreArchived | None = None) -> ArchivedRestored:
        return await retention.restore((body or RestoreArchived()).vector_ids)

    @router.post(
        "/backup",
        dependencies=admin,
        response_class=FileResponse,
        responses={200: {"content": _GZIP, "description": "The backup (tar.gz)"}},
    )
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
            filename=f"memory-backup-{manifest.created_at.replace(':', '')}.tar.gz",
            headers={"X-Hindsight-Backup-Counts": json.dumps(manifest.counts.model_dump())},
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    @router.post(
        "/restore",
        dependencies=admin,
        response_model=BackupRestored,
        openapi_extra={"requestBody": {"required": True, "content": _GZIP}},
    )
    async def restore(request: Request) -> BackupRestored:
        # The archive is streamed to a file as it arrives: not a JSON body.
        fd, name = tempfile.mkstemp(prefix="memory-restore-", suffix=".tar.gz")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as handle:
                async for chunk in request.stream():
                    handle.write(chunk)
            return await backups.restore(path)
        finally:
            path.unlink(missing_ok=True)

    if patterns is not None and nearest is not None:
        router.include_router(patterns_router(patterns, nearest, admin=admin))
    app.include_router(router)
    _document_400(app)
    return app


def _document_400(app: FastAPI) -> None:
    """Leave FastAPI's 422 out of ``/openapi.json``: this API answers bad input with 400."""
    build = app.openapi

    def openapi() -> dict[str, Any]:  # the OpenAPI document, as FastAPI types it
        if app.openapi_schema is None:
            for item in build()["paths"].values():
                for operation in item.values():
                    operation["responses"].pop("422", None)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
