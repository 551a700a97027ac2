"""Login throttling and login CSRF: pure logic on a hand-driven clock."""

from __future__ import annotations

import pytest

from hindsight.labeling.auth import login_csrf_cookie, login_csrf_ok, login_csrf_token
from hindsight.labeling.domain.passwords import new_token
from hindsight.labeling.domain.throttle import SlidingWindowThrottle
from hindsight.labeling.login_throttle import InMemoryLoginThrottle, account_key, address_key

pytestmark = pytest.mark.unit


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _throttle(clock: Clock, **kwargs: float) -> SlidingWindowThrottle:
    settings = {"max_failures": 3, "window_s": 60.0, "lockout_s": 600.0, **kwargs}
    return SlidingWindowThrottle(
        max_failures=int(settings["max_failures"]),
        window_s=settings["window_s"],
        lockout_s=settings["lockout_s"],
        max_keys=int(kwargs.get("max_keys", 10_000)),
        clock=clock,
    )


# --- SlidingWindowThrottle --------------------------------------------------------------


def test_locks_at_the_limit_and_unlocks_after_the_lockout() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    assert [throttle.hit("alice") for _ in range(3)] == [False, False, True]
    assert throttle.retry_after("alice") == 600.0
    clock.advance(599.0)
    assert throttle.retry_after("alice") == pytest.approx(1.0)
    assert throttle.hit("alice") is False  # a failure while locked neither counts nor extends
    assert throttle.retry_after("alice") == pytest.approx(1.0)
    clock.advance(1.0)
    assert throttle.retry_after("alice") == 0.0
    assert throttle.failures("alice") == 0  # a served lockout starts the key afresh
    assert throttle.hit("alice") is False


def test_only_failures_inside_the_window_count() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    throttle.hit("alice")
    clock.advance(30.0)
    throttle.hit("alice")
    clock.advance(31.0)  # the first one is now 61 s old
    assert throttle.failures("alice") == 2  # counted lazily: pruned on the next hit
    assert throttle.hit("alice") is False
    assert throttle.failures("alice") == 2
    assert throttle.retry_after("alice") == 0.0
    assert throttle.hit("alice") is True


def test_keys_are_independent_and_clear_forgets() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(3):
        throttle.hit("alice")
    throttle.hit("bob")
    assert throttle.retry_after("alice") > 0 and throttle.retry_after("bob") == 0.0
    throttle.clear("alice")
    assert throttle.retry_after("alice") == 0.0 and throttle.failures("alice") == 0
    assert throttle.failures("bob") == 1


def test_take_back_withdraws_one_failure_and_the_lockout_it_caused() -> None:
    clock = Clock()
    throttle = _throttle(clock)
    throttle.hit("office")
    throttle.hit("office")
    assert throttle.hit("office") is True
    throttle.take_back("office")
    assert throttle.retry_after("office") == 0.0 and throttle.failures("office") == 2
    throttle.take_back("office")
    throttle.take_back("office")
    throttle.take_back("office")  # nothing left: harmless
    assert throttle.failures("office") == 0 and len(throttle) == 0


def test_memory_is_bounded_and_idle_keys_go_first() -> None:
    clock = Clock()
    throttle = _throttle(clock, max_failures=2, max_keys=3)
    throttle.hit("locked")
    assert throttle.hit("locked") is True  # locked for 600 s, the least recently touched
    throttle.hit("b")
    throttle.hit("c")
    clock.advance(61.0)  # b and c idle (out of the window); "locked" is still locked
    for name in ("d", "e"):
        throttle.hit(name)
    assert len(throttle) == 3
    assert throttle.retry_after("locked") > 0
    assert throttle.failures("d") == throttle.failures("e") == 1
    for i in range(1000):
        throttle.hit(f"flood-{i}")
    assert len(throttle) == 3  # past the bound live keys go, oldest first...
    assert throttle.retry_after("locked") > 0  # ...but a flood of names lifts no lockout


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        SlidingWindowThrottle(max_failures=0, window_s=1, lockout_s=1)
    with pytest.raises(ValueError, match="positive"):
        SlidingWindowThrottle(max_failures=1, window_s=1, lockout_s=0)


# --- InMemoryLoginThrottle ---------------------------------------------------------------


def _login_throttle(clock: Clock) -> InMemoryLoginThrottle:
    return InMemoryLoginThrottle(
        max_failures=3, address_max_failures=5, window_s=300.0, lockout_s=900.0, clock=clock
    )


async def test_attempts_count_before_the_password_is_checked() -> None:
    clock = Clock()
    throttle = _login_throttle(clock)
    # Parallel guesses all start before any finishes: only the first 3 are let through.
    attempts = [await throttle.attempt(account="alice", address="10.0.0.1") for _ in range(5)]
    assert [a.allowed for a in attempts] == [True, True, True, False, False]
    assert attempts[2].locks == ("account",) and attempts[2].lockout_s == 900.0
    assert attempts[3].retry_after_s == 900.0
    clock.advance(900.0)
    assert (await throttle.attempt(account="alice", address="10.0.0.1")).allowed


async def test_success_clears_the_account_and_takes_the_address_count_back() -> None:
    clock = Clock()
    throttle = _login_throttle(clock)
    for _ in range(2):
        await throttle.attempt(account="alice", address="10.0.0.1")
    await throttle.attempt(account="alice", address="10.0.0.1")  # locks alice ...
    await throttle.succeeded(account="alice", address="10.0.0.1")  # ... but was right
    assert throttle.accounts.failures("alice") == 0
    assert throttle.addresses.failures("10.0.0.1") == 2
    assert (await throttle.attempt(account="alice", address="10.0.0.1")).allowed


async def test_one_address_guessing_many_accounts_is_locked() -> None:
    clock = Clock()
    throttle = _login_throttle(clock)
    results = [await throttle.attempt(account=f"user{i}", address="10.0.0.9") for i in range(6)]
    assert [r.allowed for r in results] == [True] * 5 + [False]
    assert results[4].locks == ("address",)
    # Unknown names are throttled exactly like real ones; another address is unaffected.
    assert (await throttle.attempt(account="user0", address="10.0.0.10")).allowed


async def test_abandoned_attempt_counts_for_nothing() -> None:
    clock = Clock()
    throttle = _login_throttle(clock)
    for _ in range(3):
        attempt = await throttle.attempt(account="alice", address="10.0.0.1")
        await throttle.abandoned(account="alice", address="10.0.0.1")
    assert attempt.locks == ()
    assert throttle.accounts.failures("alice") == 0
    assert throttle.addresses.failures("10.0.0.1") == 0


def test_address_and_account_keys() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:2:ffff::1") == address_key("2001:db8:1:2::9")
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_key(None) == "unknown"
    assert address_key("testclient") == "testclient"
    assert account_key("alice") == "alice"
    assert len(account_key("x" * 100_000)) == 65  # no name longer than 64 exists


# --- login CSRF (double submit) ----------------------------------------------------------


def test_login_csrf_double_submit() -> None:
    token = new_token()
    assert login_csrf_ok(token, token)
    assert not login_csrf_ok(token, new_token())
    assert not login_csrf_ok(None, token)
    assert not login_csrf_ok(token, "")
    assert not login_csrf_ok("", "")
    # The browser's own token is kept (other open tabs stay valid); junk is replaced.
    assert login_csrf_token(token) == token
    fresh = login_csrf_token("attacker<script>")
    assert fresh != "attacker<script>" and len(fresh) == 43
    assert login_csrf_token(None) != login_csrf_token(None)
    assert login_csrf_cookie(True).startswith("__Host-")
    assert not login_csrf_cookie(False).startswith("__Host-")
