"""Server-rendered pages: login and the labeling page (grid + focused review view)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hindsight.common.errors import UnauthenticatedError
from hindsight.labeling.auth import (
    COOKIE,
    CSRF_HEADER,
    LOGIN_CSRF_FIELD,
    Auth,
    login_csrf_cookie,
    login_csrf_ok,
    login_csrf_token,
)
from hindsight.labeling.http_api import parse_filter, parse_page
from hindsight.labeling.login_throttle import (
    Attempt,
    LoginThrottle,
    account_key,
    address_key,
)
from hindsight.labeling.memory_client import MemoryClient
from hindsight.labeling.metrics import LOGIN_FAILURES
from hindsight.labeling.schemas import MAX_PAGE_SIZE, ItemPagePublic
from hindsight.labeling.storage import Storage

__all__ = ["TEMPLATES", "web_router"]

TEMPLATES = Path(__file__).parent / "templates"
logger = logging.getLogger(__name__)
_WRONG = "Wrong name or password."
_CSRF_ERROR = (
    "This sign-in form has expired or was not sent by this site. Sign in again with the form below."
)


def _locked_error(seconds: float) -> str:
    # The same words whether or not the account exists: the lock says nothing about it.
    if seconds < 90:
        wait = f"{max(1, math.ceil(seconds))} seconds"
    else:
        wait = f"{math.ceil(seconds / 60)} minutes"
    return f"Too many failed sign-in attempts. Try again in {wait}."


def _log_lockout(attempt: Attempt, *, account: str, address: str) -> None:
    # Never the password; the name is logged (operators need it), bounded by account_key.
    logger.warning(
        "sign-in locked after repeated failures",
        extra={
            "event": "login_lockout",
            "scopes": list(attempt.locks),
            "account": account,
            "client_address": address,
            "lockout_s": attempt.lockout_s,
        },
    )


def _script_json(value: object) -> str:
    # Safe inside <script type="application/json">: no "</script>" can end the element.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_PAGE_KEYS = ("after", "before", "focus")


def _page_url(request: Request, **cursor: str) -> str:
    """This page's URL with its filters, at another cursor (none: the first page)."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in _PAGE_KEYS]
    return "/?" + urlencode(kept + list(cursor.items()))


def web_router(
    *,
    storage: Storage,
    auth: Auth,
    login_throttle: LoginThrottle,
    memory: MemoryClient,
    keymap: dict[str, list[str]],
    secure_cookie: bool,
    session_ttl_s: float,
    page_size: int,
) -> APIRouter:
    """``/``, ``/login``, ``/logout``."""
    router = APIRouter()
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.filters["script_json"] = _script_json

    csrf_cookie = login_csrf_cookie(secure_cookie)

    def login_page_response(
        request: Request,
        *,
        status_code: int = 200,
        error: str | None = None,
        username: str = "",
        retry_after_s: float = 0.0,
    ) -> Response:
        """The sign-in page, its form carrying the pre-session CSRF token of the cookie."""
        token = login_csrf_token(request.cookies.get(csrf_cookie))
        context = {
            "error": error,
            "username": username,
            "csrf_field": LOGIN_CSRF_FIELD,
            "csrf_token": token,
        }
        response = templates.TemplateResponse(
            request, "login.html", context, status_code=status_code
        )
        # A browser-session cookie: nothing to read for scripts, never sent cross-site.
        response.set_cookie(
            csrf_cookie, token, httponly=True, samesite="strict", secure=secure_cookie, path="/"
        )
        response.headers["Cache-Control"] = "no-store"
        if retry_after_s > 0:
            response.headers["Retry-After"] = str(math.ceil(retry_after_s))
        return response

    @router.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request) -> Response:
        return login_page_response(request)

    @router.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        csrf_token: Annotated[str, Form()] = "",
    ) -> Response:
        name = username.strip()
        if not login_csrf_ok(request.cookies.get(csrf_cookie), csrf_token):
            LOGIN_FAILURES.labels("csrf").inc()
            return login_page_response(request, status_code=403, error=_CSRF_ERROR, username=name)
        account = account_key(name)
        address = address_key(request.client.host if request.client else None)
        attempt = await login_throttle.attempt(account=account, address=address)
        if not attempt.allowed:
            LOGIN_FAILURES.labels("throttled").inc()
            return login_page_response(
                request,
                status_code=429,
                error=_locked_error(attempt.retry_after_s),
                username=name,
                retry_after_s=attempt.retry_after_s,
            )
        try:
            token = await auth.login(name, password, previous=request.cookies.get(COOKIE))
        except UnauthenticatedError:
            LOGIN_FAILURES.labels("credentials").inc()
            if not attempt.locks:
                return login_page_response(request, status_code=401, error=_WRONG, username=name)
            _log_lockout(attempt, account=account, address=address)
            return login_page_response(
                request,
                status_code=429,
                error=f"{_WRONG} {_locked_error(attempt.lockout_s)}",
                username=name,
                retry_after_s=attempt.lockout_s,
            )
        except BaseException:
            await login_throttle.abandoned(account=account, address=address)
            raise
        await login_throttle.succeeded(account=account, address=address)
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
        # Spent: the next sign-in form gets a new token.
        response.delete_cookie(
            csrf_cookie, path="/", secure=secure_cookie, httponly=True, samesite="strict"
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
        size: int | None = None,
        after: str | None = None,
        before: str | None = None,
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
        want = parse_page(
            size=max(1, min(size or page_size, MAX_PAGE_SIZE)), after=after, before=before
        )
        page = ItemPagePublic.of(
            await storage.list_items(flt, size=want.size, after=want.after, before=want.before)
        )
        # The page's template and script read the items as the API writes them (JSON).
        items = [item.model_dump(mode="json") for item in page.items]
        context = {
            "labeler_id": principal.labeler_id,
            "csrf_token": principal.csrf_token,
            "csrf_header": CSRF_HEADER,
            "items": items,
            "page": {
                "total": page.total,
                "first": page.offset + 1 if items else 0,
                "last": page.offset + len(items),
                "next_url": _page_url(request, after=page.next) if page.next else None,
                "prev_url": _page_url(request, before=page.prev) if page.prev else None,
                "first_url": _page_url(request) if page.prev else None,
            },
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
                "next_page": _page_url(request, after=page.next) if page.next else None,
                "prev_page": _page_url(request, before=page.prev) if page.prev else None,
            },
        }
        response = templates.TemplateResponse(request, "index.html", context)
        response.headers["Cache-Control"] = "no-store"
        return response

    return router
