"""Guards every route shares: URL length, file-name errors, API docs only after sign-in."""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute

from hindsight.labeling.auth import Auth, Principal

__all__ = ["MAX_URL_BYTES", "install_guards"]

logger = logging.getLogger(__name__)
# Trade ids are at most 200 characters and filters short; a longer URL is not ours.
MAX_URL_BYTES = 8192


def _limit_url(app: FastAPI) -> None:
    @app.middleware("http")
    async def url_length(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
        if len(raw_path) + len(request.scope.get("query_string", b"")) > MAX_URL_BYTES:
            return JSONResponse(
                {"error": "URITooLong", "message": f"URL over {MAX_URL_BYTES} bytes"},
                status_code=414,
            )
        return await call_next(request)


async def _os_error(_: Request, exc: Exception) -> Response:
    # A name from a request that the file system refuses is the caller's fault, not ours.
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return JSONResponse(
            {"error": "InvalidInputError", "message": "name too long"}, status_code=400
        )
    logger.error("request failed: %s", exc, exc_info=exc)
    return JSONResponse({"error": "InternalError", "message": "internal error"}, status_code=500)


def _docs_behind_login(app: FastAPI, auth: Auth) -> None:
    """No Swagger UI / ReDoc (they need a CDN and inline script, which the CSP forbids);
    ``/openapi.json`` only with a session, like the API it describes."""
    gone = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url, app.openapi_url}
    kept: list[BaseRoute] = [r for r in app.router.routes if getattr(r, "path", None) not in gone]
    app.router.routes = kept
    app.docs_url = app.redoc_url = app.swagger_ui_oauth2_redirect_url = None

    session = Depends(auth.require)  # as in http_api: no Annotated alias of a local name

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: Principal = session) -> JSONResponse:
        return JSONResponse(app.openapi())


def install_guards(app: FastAPI, *, auth: Auth) -> None:
    """Add the shared guards to the service's app (before its routers)."""
    _limit_url(app)
    app.add_exception_handler(OSError, _os_error)
    _docs_behind_login(app, auth)
