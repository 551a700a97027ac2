"""``Predict`` / ``PredictBatch`` messages on the gateway: checks, pinning, per-head answers.

The data plane (:mod:`hindsight.gateway.dataplane`) owns the policy; these helpers do the
protobuf side of it: check what needs no model (the request limits of
:mod:`hindsight.common.limits`, ``side``, ``family``, ``family_version``,
``liquidity_cluster``), pin a family release for an experiment arm, build an answer whose
every head is its default (:class:`~hindsight.gateway.domain.heads.HeadDefaults`), complete
a scorer's answer that lacks a head, and say how an answer is logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Final

from hindsight.common.artifacts import validate_name
from hindsight.common.errors import InvalidInputError
from hindsight.common.family import CLUSTERS, DEFAULT_FAMILY, HEADS, Head, parse_version
from hindsight.common.limits import (
    MAX_BATCH_REQUESTS,
    MAX_FEATURES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    truncated,
)
from hindsight.gateway.domain.fallback import FallbackReason
from hindsight.gateway.domain.heads import HeadDefaults, missing_heads
from hindsight.scoring.v1.scoring_pb2 import (
    PredictBatchRequest,
    PredictRequest,
    PredictResponse,
)

__all__ = [
    "PREDICT_SIDES",
    "LoggedAs",
    "check_predict_batch",
    "check_predict_request",
    "complete",
    "fill_fallback",
    "forwarded",
    "logged_as",
]

PREDICT_SIDES: Final = frozenset({"buy", "sell"})
"""A family answers for a proposed side; "hold" proposes none."""

# The top-level field of the answer that repeats each head's value.
_HEAD_FIELDS: Final[dict[Head, str]] = {
    "entry": "conf_pat",
    "risk": "sl_katr",
    "rr": "rr_target",
    "offset": "offset_katr",
}
_STRINGS: Final = (
    ("signal_id", MAX_ID_CHARS),
    ("symbol", MAX_ID_CHARS),
    ("timeframe", MAX_ID_CHARS),
    ("family", MAX_NAME_CHARS),
    ("family_version", MAX_NAME_CHARS),
)
_READERS: Final = tuple((name, attrgetter(name), limit) for name, limit in _STRINGS)
_CLUSTER_VALUES: Final = frozenset({"", *CLUSTERS})
_SIGNAL_ID = attrgetter("signal_id")
_SIDE = attrgetter("side")
_FEATURES = attrgetter("features")
_FAMILY = attrgetter("family")
_VERSION = attrgetter("family_version")
_CLUSTER = attrgetter("liquidity_cluster")


def check_predict_request(request: PredictRequest, prefix: str = "") -> None:
    """One ``PredictRequest``: limits, then the fields that need no model; errors name the field.

    ``family``, ``family_version`` and ``liquidity_cluster`` left empty mean absent.
    """
    for name, read, limit in _READERS:
        value: str = read(request)
        if len(value) > limit:
            raise InvalidInputError(
                f"{truncated(value)!r} is longer than {limit} characters", field=prefix + name
            )
    features = request.features
    if len(features) > MAX_FEATURES:
        raise InvalidInputError(
            f"has {len(features)} entries, at most {MAX_FEATURES}", field=f"{prefix}features"
        )
    for key in features:
        if len(key) > MAX_NAME_CHARS:
            raise InvalidInputError(
                f"feature name longer than {MAX_NAME_CHARS} characters",
                field=f"{prefix}features.{truncated(key)}",
            )
    if not request.signal_id:
        raise InvalidInputError("must not be empty", field=f"{prefix}signal_id")
    if request.side not in PREDICT_SIDES:
        raise InvalidInputError("must be one of buy, sell", field=f"{prefix}side")
    if request.family:
        validate_name(request.family, field=f"{prefix}family")
    if request.family_version:
        parse_version(request.family_version, field=f"{prefix}family_version")
    if request.liquidity_cluster not in _CLUSTER_VALUES:
        raise InvalidInputError("must be one of H, M, L", field=f"{prefix}liquidity_cluster")


def check_predict_batch(request: PredictBatchRequest) -> None:
    """Every request of a batch as :func:`check_predict_request`, named ``requests[i].``.

    The usual valid batch is checked with C loops over the rows and each distinct family /
    version once; only a batch that fails them is walked row by row to name the field.
    As in ``ScoreBatch``, feature names are not checked per row on that path (bounded by
    the message size; a name the family does not have is the scorer's INVALID_ARGUMENT).
    """
    requests = request.requests
    if len(requests) > MAX_BATCH_REQUESTS:
        raise InvalidInputError(
            f"has {len(requests)} requests, at most {MAX_BATCH_REQUESTS}", field="requests"
        )
    if not requests or _valid_rows(requests):
        return
    for i, one in enumerate(requests):
        check_predict_request(one, f"requests[{i}].")


def _valid_rows(requests: Sequence[PredictRequest]) -> bool:
    if not all(map(_SIGNAL_ID, requests)) or not set(map(_SIDE, requests)) <= PREDICT_SIDES:
        return False
    if any(max(map(len, map(read, requests))) > limit for _, read, limit in _READERS):
        return False
    if max(map(len, map(_FEATURES, requests))) > MAX_FEATURES:
        return False
    if not set(map(_CLUSTER, requests)) <= _CLUSTER_VALUES:
        return False
    try:
        for family in set(map(_FAMILY, requests)) - {""}:
            validate_name(family, field="family")
        for version in set(map(_VERSION, requests)) - {""}:
            parse_version(version)
    except InvalidInputError:
        return False
    return True


def forwarded(request: PredictRequest, *, family: str, version: str | None) -> PredictRequest:
    """What goes to the scorer: ``request``, or a copy that pins ``version`` and names the
    family where the gateway's default is not the scorers' (:data:`DEFAULT_FAMILY`)."""
    name_it = not request.family and family != DEFAULT_FAMILY
    if not version and not name_it:
        return request
    copy = PredictRequest()
    copy.CopyFrom(request)
    if name_it:
        copy.family = family
    if version:
        copy.family_version = version
    return copy


def fill_fallback(
    response: PredictResponse,
    request: PredictRequest,
    *,
    family: str,
    reason: FallbackReason,
    defaults: HeadDefaults,
    elapsed_ms: float,
) -> PredictResponse:
    """Fill ``response`` (empty) with every head's default: no scorer answered."""
    response.signal_id = request.signal_id
    response.side = request.side
    response.family = family
    response.fallback = True
    response.prediction_time_ms = elapsed_ms
    _set_defaults(response, HEADS, defaults, reason.value)
    return response


def complete(response: PredictResponse, defaults: HeadDefaults) -> list[Head]:
    """Give each head a scorer's answer lacks its default (reason ``no_model``); returns them.

    Heads the scorer answered, fallbacks included, are left exactly as they came.
    """
    missing = missing_heads(response.heads)
    if missing:
        _set_defaults(response, missing, defaults, FallbackReason.NO_MODEL.value)
        response.fallback = True
    return missing


def _set_defaults(
    response: PredictResponse, heads: Iterable[Head], defaults: HeadDefaults, reason: str
) -> None:
    for head in heads:
        value = defaults.value(head)
        answer = response.heads[head]
        answer.Clear()
        answer.value = value
        answer.fallback = True
        answer.fallback_reason = reason
        setattr(response, _HEAD_FIELDS[head], value)
        if head == "offset":
            response.entry_style = defaults.entry_style


@dataclass(frozen=True, slots=True)
class LoggedAs:
    """How an answer goes into ``prediction.logged``: ``p_success`` is ``conf_pat``, so the
    entry head decides whether the logged prediction is a model's."""

    fallback: bool
    fallback_reason: str | None
    model_version: str | None
    """The family release; None when the entry head fell back."""


def logged_as(response: PredictResponse) -> LoggedAs:
    """The log fields of one answer (see :class:`LoggedAs`)."""
    entry = response.heads["entry"] if "entry" in response.heads else None
    if entry is None or entry.fallback:
        reason = entry.fallback_reason if entry is not None else FallbackReason.NO_MODEL.value
        return LoggedAs(True, reason or None, None)
    return LoggedAs(False, None, response.family_version or None)
