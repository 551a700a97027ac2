"""Sign-in hardening through the real app (real NATS + PostgreSQL): throttling, login CSRF,
fresh sessions."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from hindsight.labeling.login_throttle import InMemoryLoginThrottle

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-password"
WRONG = "not-the-password"
Factory = Callable[..., Awaitable[Any]]


class Clock:
    """The throttle's clock, moved by the test: a lockout ends without waiting for it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _failures(text: str) -> dict[str, float]:
    found = re.findall(r'hindsight_labeling_login_failures_total\{reason="(\w+)"\} (\S+)', text)
    return {reason: float(value) for reason, value in found}


async def _metrics(client: httpx.AsyncClient, base_url: str) -> dict[str, float]:
    return _failures((await client.get(f"{base_url}/metrics")).text)


def _error(page: str) -> str:
    match = re.search(r'<p class="form-error" role="alert">([^<]*)</p>', page)
    assert match is not None, page
    return match.group(1)


def _session_cookie(response: httpx.Response) -> str | None:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith("hindsight_session="):
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


async def test_lockout_answers_429_with_retry_after_then_unlocks(
    labeling_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    throttle = InMemoryLoginThrottle(
        max_failures=3, address_max_failures=100, window_s=300, lockout_s=600, clock=clock
    )
    harness = await labeling_factory(login_throttle=throttle)
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    caplog.set_level(logging.WARNING, logger="hindsight.labeling.web")
    async with httpx.AsyncClient(timeout=10) as client:
        before = await _metrics(client, url)
        statuses = [(await harness.post_login(client, "alice", WRONG)).status_code for _ in "12"]
        assert statuses == [401, 401]
        third = await harness.post_login(client, "alice", WRONG)
        assert third.status_code == 429 and third.headers["retry-after"] == "600"
        assert _error(third.text) == (
            "Wrong name or password. Too many failed sign-in attempts. Try again in 10 minutes."
        )
        # Locked: even the right password is refused, and no session is made.
        clock.now = 240.0
        right = await harness.post_login(client, "alice", PASSWORD)
        assert right.status_code == 429 and right.headers["retry-after"] == "360"
        assert _error(right.text) == "Too many failed sign-in attempts. Try again in 6 minutes."
        assert _session_cookie(right) is None
        assert (await client.get(f"{url}/api/items")).status_code == 401
        # An unknown name is throttled the same way, with the same words.
        ghost = [(await harness.post_login(client, "ghost", WRONG)) for _ in range(4)]
        assert [r.status_code for r in ghost] == [401, 401, 429, 429]
        assert _error(ghost[1].text) == "Wrong name or password."
        assert _error(ghost[2].text) == _error(third.text)
        assert _error(ghost[3].text) == "Too many failed sign-in attempts. Try again in 10 minutes."
        after = await _metrics(client, url)
        assert after["credentials"] - before["credentials"] == 6
        assert after["throttled"] - before["throttled"] == 2

        clock.now = 600.0  # alice's lockout has run out
        unlocked = await harness.post_login(client, "alice", PASSWORD)
        assert unlocked.status_code == 303 and _session_cookie(unlocked)
        assert (await client.get(f"{url}/api/items")).status_code == 200

    lockouts = [r for r in caplog.records if getattr(r, "event", None) == "login_lockout"]
    assert [(r.account, r.scopes) for r in lockouts] == [  # type: ignore[attr-defined]
        ("alice", ["account"]),
        ("ghost", ["account"]),
    ]
    assert all(r.levelno == logging.WARNING for r in lockouts)
    assert WRONG not in caplog.text and PASSWORD not in caplog.text


async def test_success_clears_the_accounts_failures(labeling_factory: Factory) -> None:
    harness = await labeling_factory(login_max_failures=3, login_lockout_s=600)
    await harness.add_labeler("alice", PASSWORD)
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(2):
            assert (await harness.post_login(client, "alice", WRONG)).status_code == 401
        assert (await harness.post_login(client, "alice", PASSWORD)).status_code == 303
        # Counting starts again from zero: two more misses are still plain misses ...
        for _ in range(2):
            assert (await harness.post_login(client, "alice", WRONG)).status_code == 401
        # ... and the third since the success locks.
        assert (await harness.post_login(client, "alice", WRONG)).status_code == 429


async def test_parallel_guesses_cannot_overtake_the_count(labeling_factory: Factory) -> None:
    harness = await labeling_factory(login_max_failures=3)
    await harness.add_labeler("alice", PASSWORD)
    async with httpx.AsyncClient(timeout=10) as client:
        before = await _metrics(client, harness.base_url)
        token = await harness.login_form(client)
        form = {"username": "alice", "password": WRONG, "csrf_token": token}
        responses = await asyncio.gather(
            *(client.post(f"{harness.base_url}/login", data=form) for _ in range(10))
        )
        after = await _metrics(client, harness.base_url)
    assert sorted(r.status_code for r in responses) == [401, 401] + [429] * 8
    # Exactly 3 passwords were checked; the other 7 were refused before any check.
    assert after["credentials"] - before["credentials"] == 3
    assert after["throttled"] - before["throttled"] == 7


async def test_one_address_guessing_many_accounts_is_throttled(
    labeling_factory: Factory,
) -> None:
    # uvicorn takes the client address from X-Forwarded-For sent by a trusted proxy
    # (loopback by default, FORWARDED_ALLOW_IPS in production): the test is that proxy.
    harness = await labeling_factory(login_max_failures=50, login_address_max_failures=4)
    await harness.add_labeler("alice", PASSWORD)
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    office = {"X-Forwarded-For": "198.51.100.20"}
    async with httpx.AsyncClient(timeout=10) as client:
        statuses = [
            (await harness.post_login(client, f"user{i}", WRONG, headers=attacker)).status_code
            for i in range(5)
        ]
        assert statuses == [401, 401, 401, 429, 429]
        locked = await harness.post_login(client, "alice", PASSWORD, headers=attacker)
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        # The account itself is not locked: from another address alice signs in.
        ok = await harness.post_login(client, "alice", PASSWORD, headers=office)
        assert ok.status_code == 303


async def test_login_without_a_matching_csrf_token_is_refused(labeling_factory: Factory) -> None:
    harness = await labeling_factory(login_max_failures=2)
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    creds = {"username": "alice", "password": PASSWORD}
    async with httpx.AsyncClient(timeout=10) as client:
        before = await _metrics(client, url)
        # A cross-site form post: no pre-session cookie, no token.
        bare = await client.post(f"{url}/login", data=creds)
        assert bare.status_code == 403
        assert "not sent by this site" in _error(bare.text)
        assert _session_cookie(bare) is None

        page = await client.get(f"{url}/login")
        assert page.headers["cache-control"] == "no-store"
        (set_cookie,) = page.headers.get_list("set-cookie")
        cookie_value = set_cookie.split(";", 1)[0].split("=", 1)[1]
        assert set_cookie.startswith("hindsight_login_csrf=")
        assert "httponly" in set_cookie.lower() and "samesite=strict" in set_cookie.lower()
        assert f'name="csrf_token" value="{cookie_value}"' in page.text
        # The cookie is there but the field is missing, or another one.
        missing = await client.post(f"{url}/login", data=creds)
        mismatched = await client.post(f"{url}/login", data={**creds, "csrf_token": "x" * 43})
        assert missing.status_code == mismatched.status_code == 403
        assert _session_cookie(missing) is None and _session_cookie(mismatched) is None
        # The field without the cookie (the attacker's own token pasted into a form).
        async with httpx.AsyncClient(timeout=10) as other:
            no_cookie = await other.post(f"{url}/login", data={**creds, "csrf_token": cookie_value})
            assert no_cookie.status_code == 403
        after = await _metrics(client, url)
        assert after["csrf"] - before["csrf"] == 4
        assert after["credentials"] == before["credentials"]  # refused before any check

        # CSRF refusals are not password guesses: nothing was counted (limit is 2).
        assert f'value="{cookie_value}"' in mismatched.text  # the refusal page can resubmit
        good = await client.post(f"{url}/login", data={**creds, "csrf_token": cookie_value})
        assert good.status_code == 303
        # The token is spent with the login: its cookie is cleared.
        cleared = [c for c in good.headers.get_list("set-cookie") if "login_csrf" in c]
        assert cleared and 'hindsight_login_csrf=""' in cleared[0]


async def test_login_always_makes_a_fresh_session(labeling_factory: Factory) -> None:
    harness = await labeling_factory()
    await harness.add_labeler("alice", PASSWORD)
    url = harness.base_url
    async with httpx.AsyncClient(timeout=10) as client:
        # A session id planted before login (fixation) is never adopted.
        client.cookies.set("hindsight_session", "planted-by-attacker")
        first = await harness.post_login(client, "alice", PASSWORD)
        first_id = _session_cookie(first)
        assert first_id and first_id != "planted-by-attacker"
        assert (await client.get(f"{url}/api/items")).status_code == 200
        # Signing in again replaces the session and ends the old one.
        second = await harness.post_login(client, "alice", PASSWORD)
        second_id = _session_cookie(second)
        assert second_id and second_id != first_id
    async with httpx.AsyncClient(timeout=10, cookies={"hindsight_session": first_id}) as old:
        assert (await old.get(f"{url}/api/items")).status_code == 401
    async with httpx.AsyncClient(timeout=10, cookies={"hindsight_session": second_id}) as new:
        assert (await new.get(f"{url}/api/items")).status_code == 200
