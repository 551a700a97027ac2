"""Request limits of the Scoring API, checked the same way by the gateway and the scorer.

A caller's strings go into error messages and a request's size into memory and CPU, so
both are bounded before anything else looks at a request: a string over its limit, a
``features`` map or ``feature_names`` list too long, or a batch with too many requests is
INVALID_ARGUMENT naming the field, with the offending value shortened by :func:`truncated`
(gRPC statuses travel in metadata, whose size is limited: an echoed 16 kB name once made
the status itself fail, and the gateway took it for a dead scorer). The whole message is
bounded by the gRPC servers' maximum receive size (RESOURCE_EXHAUSTED, from gRPC itself).
The limits are documented in ``protos/hindsight/scoring/v1/scoring.proto``.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any, Final

from hindsight.common.errors import InvalidInputError

__all__ = [
    "MAX_BATCH_REQUESTS",
    "MAX_FEATURES",
    "MAX_FORWARDED_BYTES",
    "MAX_ID_CHARS",
    "MAX_NAME_CHARS",
    "MAX_REQUEST_BYTES",
    "SHOWN_CHARS",
    "SIDES",
    "check_batch_limits",
    "check_request",
    "check_score_request",
    "max_receive_option",
    "truncated",
]

MAX_ID_CHARS: Final = 256
"""``signal_id``, ``symbol``, ``timeframe``: characters at most."""
MAX_NAME_CHARS: Final = 256
"""``model_name``, ``model_version`` and every feature name: characters at most."""
MAX_FEATURES: Final = 1024
"""Entries of a request's ``features`` / ``feature_values``, and of ``feature_names``."""
MAX_BATCH_REQUESTS: Final = 10_000
"""Requests in one ``ScoreBatch``."""
MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
"""A serialized request the gateway accepts (its gRPC maximum receive size)."""
MAX_FORWARDED_BYTES: Final = 8 * 1024 * 1024
"""The scorer's maximum receive size: what the gateway accepts plus the ``model_version``
it may pin on every request of a batch (10,000 × ~260 bytes), with room to spare, so a
request the gateway took is never refused by a scorer for its size."""
SHOWN_CHARS: Final = 64
"""Characters of a caller's value quoted in an error message."""
SIDES: Final = frozenset({"buy", "sell", "hold"})

_STRINGS: Final = (
    ("signal_id", MAX_ID_CHARS),
    ("symbol", MAX_ID_CHARS),
    ("timeframe", MAX_ID_CHARS),
    ("model_name", MAX_NAME_CHARS),
    ("model_version", MAX_NAME_CHARS),
)
_READERS: Final = tuple((name, attrgetter(name), limit) for name, limit in _STRINGS)
# What the gateway and the scorer read or echo per row of a batch. The rest of a row
# (symbol, timeframe, the features map) is bounded by the message size only: at ~0.3-1 µs
# per field read and row, checking it all would cost as much as scoring a packed row; the
# scorer reports a feature name it does not know (an over-long one included) truncated.
_BATCH_READERS: Final = tuple(
    r for r in _READERS if r[0] in {"signal_id", "model_name", "model_version"}
)
_FEATURES = attrgetter("features")
_VALUES = attrgetter("feature_values")


def truncated(value: str, shown: int = SHOWN_CHARS) -> str:
    """``value`` as is when short, else its first ``shown`` characters and its length."""
    if len(value) <= shown:
        return value
    return f"{value[:shown]}…({len(value)} chars)"


def max_receive_option(max_bytes: int) -> tuple[str, int]:
    """The gRPC server option that sets the maximum receive size explicitly."""
    return ("grpc.max_receive_message_length", max_bytes)


def _longest(values: Iterable[Any]) -> int:
    return max(map(len, values), default=0)


def _check_strings(request: Any, prefix: str, readers: tuple[Any, ...]) -> None:
    for name, read, limit in readers:
        value = read(request)
        if len(value) > limit:
            raise InvalidInputError(
                f"{truncated(value)!r} is longer than {limit} characters", field=prefix + name
            )


def _check_limits(request: Any, prefix: str) -> None:
    _check_strings(request, prefix, _READERS)
    features = request.features
    if len(features) > MAX_FEATURES:
        raise InvalidInputError(
            f"has {len(features)} entries, at most {MAX_FEATURES}", field=f"{prefix}features"
        )
    if _longest(features) > MAX_NAME_CHARS:
        name = next(key for key in features if len(key) > MAX_NAME_CHARS)
        raise InvalidInputError(
            f"feature name longer than {MAX_NAME_CHARS} characters",
            field=f"{prefix}features.{truncated(name)}",
        )
    values = len(request.feature_values)
    if values > MAX_FEATURES:
        raise InvalidInputError(
            f"has {values} values, at most {MAX_FEATURES}", field=f"{prefix}feature_values"
        )


def check_request(request: Any, prefix: str = "") -> None:
    """A ``ScoreRequest``'s limits, then its fields that need no model; errors name the field.

    ``side`` has no length limit: anything but buy, sell or hold is refused unquoted.
    """
    _check_limits(request, prefix)
    if not request.signal_id:
        raise InvalidInputError("must not be empty", field=f"{prefix}signal_id")
    if request.side not in SIDES:
        raise InvalidInputError("must be one of buy, sell, hold", field=f"{prefix}side")


def check_score_request(request: Any) -> None:
    """A ``Score`` call's request (gateway and scorer alike): :func:`check_request`, and no
    packed ``feature_values`` (they belong to ``ScoreBatch`` with ``feature_names``)."""
    check_request(request)
    if request.feature_values:
        raise InvalidInputError(
            "packed values are for ScoreBatch (with feature_names) only", field="feature_values"
        )


def check_batch_limits(request: Any) -> None:
    """A ``ScoreBatchRequest``'s limits; errors name the field.

    Per row: ``signal_id``, ``model_name`` and ``model_version``, with C loops only (no
    bytecode per row); only a batch over a limit is walked row by row to name the first
    offending field.
    """
    requests = request.requests
    if len(requests) > MAX_BATCH_REQUESTS:
        raise InvalidInputError(
            f"has {len(requests)} requests, at most {MAX_BATCH_REQUESTS}", field="requests"
        )
    names = request.feature_names
    if len(names) > MAX_FEATURES:
        raise InvalidInputError(
            f"has {len(names)} names, at most {MAX_FEATURES}", field="feature_names"
        )
    if _longest(names) > MAX_NAME_CHARS:
        i = next(i for i, name in enumerate(names) if len(name) > MAX_NAME_CHARS)
        raise InvalidInputError(
            f"{truncated(names[i])!r} is longer than {MAX_NAME_CHARS} characters",
            field=f"feature_names[{i}]",
        )
    if not requests or _within_limits(requests):
        return
    for i, one in enumerate(requests):
        _check_strings(one, f"requests[{i}].", _BATCH_READERS)


def _within_limits(requests: Any) -> bool:
    return all(_longest(map(read, requests)) <= limit for _, read, limit in _BATCH_READERS)
