"""The Hindsight error hierarchy.

Library errors are translated into these at the boundary (``raise ... from exc``);
transports map them to status codes in one place each: gRPC in
:mod:`hindsight.common.grpc_server`, HTTP in :mod:`hindsight.common.http`, NATS in
:mod:`hindsight.common.broker` (bad input goes to the dead-letter stream).
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "ConfigurationError",
    "HindsightError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "UnavailableError",
]


class HindsightError(Exception):
    """Root of every error Hindsight raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(HindsightError):
    """Bad input from a caller: names the field and the reason. Never retried."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class NotFoundError(HindsightError):
    """The thing asked for does not exist."""


class AlreadyExistsError(HindsightError):
    """A create that conflicts with something that already exists."""


class UnauthenticatedError(HindsightError):
    """The caller did not prove who it is."""


class PermissionDeniedError(HindsightError):
    """The caller is known but may not do this."""


class UnavailableError(HindsightError):
    """A dependency is down or too slow; the caller may retry later."""


class ConfigurationError(HindsightError):
    """Settings that cannot work; raised at start-up, never at request time."""
