"""Labeler sessions: scrypt passwords, server-side sessions, CSRF tokens (login included)."""

from __future__ import annotations

import asyncio
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request

from hindsight.common.errors import PermissionDeniedError, UnauthenticatedError
from hindsight.labeling.domain.passwords import hash_token, new_token, verify_password
from hindsight.labeling.storage import Storage

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "LOGIN_CSRF_FIELD",
    "Auth",
    "Principal",
    "login_csrf_cookie",
    "login_csrf_ok",
    "login_csrf_token",
]

COOKIE = "hindsight_session"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_CSRF_FIELD = "csrf_token"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what new_token() makes
# Verified against when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32


@dataclass(frozen=True, slots=True)
class Principal:
    """The logged-in labeler of a request."""

    labeler_id: str
    csrf_token: str
    token_hash: str


class Auth:
    """Logs labelers in and finds the session of a request."""

    def __init__(self, storage: Storage, *, ttl_s: float) -> None:
        self.storage = storage
        self.ttl_s = ttl_s

    async def login(self, labeler_id: str, password: str, *, previous: str | None = None) -> str:
        """A new session token, or :class:`UnauthenticatedError`.

        The token is always new (never one the browser brought: no session fixation);
        ``previous``, the session cookie the request came with, is ended.
        """
        stored = await self.storage.password_hash(labeler_id)
        ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH)
        if stored is None or not ok:
            raise UnauthenticatedError("wrong name or password")
        if previous:
            await self.storage.delete_session(hash_token(previous))
        token = new_token()
        await self.storage.create_session(
            token_hash=hash_token(token),
            labeler_id=labeler_id,
            csrf_token=new_token(),
            expires_at=datetime.now(UTC) + timedelta(seconds=self.ttl_s),
        )
        return token

    async def principal(self, request: Request) -> Principal | None:
        """The session's labeler, or ``None`` without a live session."""
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        token_hash = hash_token(token)
        found = await self.storage.session(token_hash)
        if found is None:
            return None
        return Principal(
            labeler_id=found.labeler_id, csrf_token=found.csrf_token, token_hash=token_hash
        )

    async def require(self, request: Request) -> Principal:
        """The session's labeler, or 401."""
        principal = await self.principal(request)
        if principal is None:
            raise UnauthenticatedError("log in first: no valid session")
        return principal

    async def require_write(self, request: Request) -> Principal:
        """A session (401 otherwise) and its CSRF token in the header (403 otherwise)."""
        principal = await self.require(request)
        given = request.headers.get(CSRF_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), principal.csrf_token.encode()):
            raise PermissionDeniedError(f"missing or wrong {CSRF_HEADER} header")
        return principal


def login_csrf_cookie(secure: bool) -> str:
    """Name of the pre-session CSRF cookie.

    Behind HTTPS the ``__Host-`` prefix means only this host can set it, so a sibling
    subdomain cannot plant a cookie matching a form of its own (double-submit's weak spot).
    """
    return "__Host-hindsight_login_csrf" if secure else "hindsight_login_csrf"


def login_csrf_token(cookie_value: str | None) -> str:
    """The login form's token: the browser's own when it has one (open tabs stay valid)."""
    if cookie_value and _TOKEN.fullmatch(cookie_value):
        return cookie_value
    return new_token()


def login_csrf_ok(cookie_value: str | None, form_value: str | None) -> bool:
    """Double-submit check: cookie and form field present and equal (constant time)."""
    if not cookie_value or not form_value:
        return False
    return hmac.compare_digest(cookie_value.encode(), form_value.encode())
