"""Server-rendered pages: login and the labeling page (grid + focused review view)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hindsight.common.errors import UnauthenticatedError
from hindsight.labeling.auth import COOKIE, CSRF_HEADER, Auth
from hindsight.labeling.http_api import item_public, parse_filter
from hindsight.labeling.memory import MemoryClient
from hindsight.labeling.storage import Storage

__all__ = ["TEMPLATES", "web_router"]

TEMPLATES = Path(__file__).parent / "templates"


def _script_json(value: Any) -> str:
    # Safe inside <script type="application/json">: no "</script>" can end the element.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def web_router(
    *,
    storage: Storage,
    auth: Auth,
    memory: MemoryClient,
    keymap: dict[str, list[str]],
    secure_cookie: bool,
    session_ttl_s: float,
) -> APIRouter:
    """``/``, ``/login``, ``/logout``."""
    router = APIRouter()
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["script_json"] = _script_json

    @router.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"error": None})

    @router.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
    ) -> Response:
        try:
            token = await auth.login(username.strip(), password)
        except UnauthenticatedError:
            return templates.TemplateResponse(
                request,
                "login.html",
                {"error": "Wrong name or password.", "username": username},
                status_code=401,
            )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(session_ttl_s),
            httponly=True,
            samesite="strict",
            secure=secure_cookie,
            path="/",
        )
        return response

    @router.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        principal = await auth.require_write(request)
        await storage.delete_session(principal.token_hash)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(
        request: Request,
        symbol: str | None = None,
        run_id: str | None = None,
        status: str | None = None,
        disagreement: str | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        focus: str | None = None,
    ) -> Response:
        principal = await auth.principal(request)
        if principal is None:
            return RedirectResponse("/login", status_code=303)
        flt = parse_filter(
            symbol=symbol,
            run_id=run_id,
            status=status,
            disagreement=disagreement,
            date_from=date_from,
            date_to=date_to,
        )
        items = [item_public(i) for i in await storage.list_items(flt)]
        context = {
            "labeler_id": principal.labeler_id,
            "csrf_token": principal.csrf_token,
            "csrf_header": CSRF_HEADER,
            "items": items,
            "counts": await storage.counts(),
            "facets": await storage.facets(),
            "filters": {
                "symbol": symbol or "",
                "run_id": run_id or "",
                "status": status or "",
                "disagreement": flt.disagreement,
                "date_from": date_from or "",
                "date_to": date_to or "",
            },
            "config": {
                "keymap": keymap,
                "memory_up": await memory.is_up(),
                "focus": focus,
                "csrf_header": CSRF_HEADER,
            },
        }
        response = templates.TemplateResponse(request, "index.html", context)
        response.headers["Cache-Control"] = "no-store"
        return response

    return router
