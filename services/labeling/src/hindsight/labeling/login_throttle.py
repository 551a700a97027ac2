"""Login throttling: failed sign-ins counted per account and per client address."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Literal, Protocol

from hindsight.labeling.domain.throttle import Clock, SlidingWindowThrottle

__all__ = ["Attempt", "InMemoryLoginThrottle", "LoginThrottle", "account_key", "address_key"]

Scope = Literal["account", "address"]
_MAX_NAME = 64  # labeler ids are at most 64 characters (cli.py)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The throttle's answer to a sign-in attempt.

    ``retry_after_s`` > 0: refused, nothing counted. Otherwise the attempt already counts as
    a failure (so parallel guesses cannot overtake the count); ``locks`` names the scopes it
    locked, which stand if the password turns out wrong.
    """

    retry_after_s: float = 0.0
    locks: tuple[Scope, ...] = ()
    lockout_s: float = 0.0

    @property
    def allowed(self) -> bool:
        return self.retry_after_s <= 0


class LoginThrottle(Protocol):
    """What the login needs from a throttle; a shared store (Redis, SQL) can stand in."""

    async def attempt(self, *, account: str, address: str) -> Attempt:
        """Refuse while locked, else count the attempt as a failure (atomically)."""
        ...

    async def succeeded(self, *, account: str, address: str) -> None:
        """The password was right: clear the account, take the address's count back."""
        ...

    async def abandoned(self, *, account: str, address: str) -> None:
        """The attempt decided nothing (e.g. the database failed): take both counts back."""
        ...


class InMemoryLoginThrottle:
    """In-process state: right for one replica only (like the per-trade save lock)."""

    def __init__(
        self,
        *,
        max_failures: int,
        address_max_failures: int,
        window_s: float,
        lockout_s: float,
        max_keys: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        def throttle(limit: int) -> SlidingWindowThrottle:
            return SlidingWindowThrottle(
                max_failures=limit,
                window_s=window_s,
                lockout_s=lockout_s,
                max_keys=max_keys,
                clock=clock or time.monotonic,
            )

        self.accounts = throttle(max_failures)
        self.addresses = throttle(address_max_failures)
        self.lockout_s = lockout_s

    async def attempt(self, *, account: str, address: str) -> Attempt:
        # No await in here: the check and the count are one step for the event loop.
        wait = max(self.accounts.retry_after(account), self.addresses.retry_after(address))
        if wait > 0:
            return Attempt(retry_after_s=wait)
        locks: list[Scope] = []
        if self.accounts.hit(account):
            locks.append("account")
        if self.addresses.hit(address):
            locks.append("address")
        return Attempt(locks=tuple(locks), lockout_s=self.lockout_s)

    async def succeeded(self, *, account: str, address: str) -> None:
        self.accounts.clear(account)
        self.addresses.take_back(address)

    async def abandoned(self, *, account: str, address: str) -> None:
        self.accounts.take_back(account)
        self.addresses.take_back(address)


def account_key(name: str) -> str:
    """The account's throttling key: the name cut to 65 characters (no account name is longer
    than 64, so a cut name is never a real account; the store's size bound is ``max_keys``)."""
    return name[: _MAX_NAME + 1]


def address_key(host: str | None) -> str:
    """The client's throttling key: its IPv4 address, or its IPv6 /64 (one host's usual share)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
