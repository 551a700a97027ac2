"""``Predict`` / ``PredictBatch``: every head of a family release for each signal.

The same policy as ``Score`` (:mod:`hindsight.scorer.dataplane`): request limits first
(strings, features), then ``signal_id`` and ``side`` (buy / sell), ``liquidity_cluster``
(H / M / L), the release resolved (``family`` / ``family_version``), the features checked
by name and value (``features.<name>``), the heads computed in the domain
(:func:`~hindsight.scorer.domain.families.predict_rows`: one run per member for a whole
batch), counted, logged (``prediction.logged`` with ``model_name`` = the family,
``model_version`` = the release and ``p_success`` = ``conf_pat``, only for calls the
gateway did not mark). Errors are :mod:`hindsight.common.errors`; in a batch they name the
request, ``requests[i].``. Nothing here awaits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, Final

import numpy as np

from hindsight.common.errors import InvalidInputError
from hindsight.common.family import CLUSTERS, entry_style
from hindsight.common.limits import (
    MAX_BATCH_REQUESTS,
    MAX_FEATURES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    truncated,
)
from hindsight.scorer.domain.families import (
    FamilyPredictions,
    FamilyStore,
    LoadedFamily,
    predict_rows,
)
from hindsight.scorer.domain.features import Matrix
from hindsight.scorer.messaging import PredictionLog
from hindsight.scorer.metrics import PREDICT_SECONDS, REQUESTS, status_code
from hindsight.scoring.v1.scoring_pb2 import (
    PredictBatchRequest,
    PredictBatchResponse,
    PredictRequest,
    PredictResponse,
)

__all__ = ["PREDICT_SIDES", "FamilyPlane", "check_predict_request"]

PREDICT_SIDES: Final = frozenset({"buy", "sell"})
_STRINGS: Final = tuple(
    (name, attrgetter(name), limit)
    for name, limit in (
        ("signal_id", MAX_ID_CHARS),
        ("symbol", MAX_ID_CHARS),
        ("timeframe", MAX_ID_CHARS),
        ("family", MAX_NAME_CHARS),
        ("family_version", MAX_NAME_CHARS),
        ("liquidity_cluster", MAX_NAME_CHARS),
    )
)


def check_predict_request(request: PredictRequest, prefix: str = "") -> None:
    """A ``PredictRequest``'s limits and the fields that need no release; errors name them.

    The limits are ``Score``'s (:mod:`hindsight.common.limits`); a caller's value is
    quoted truncated. ``side`` is buy or sell (``conf_pat`` is for a proposed trade).
    In a batch (``prefix`` set) feature names are not scanned for their length, as in
    ``ScoreBatch``: a name the family does not have is refused truncated anyway.
    """
    for name, read, limit in _STRINGS:
        value = read(request)
        if len(value) > limit:
            raise InvalidInputError(
                f"{truncated(value)!r} is longer than {limit} characters", field=prefix + name
            )
    features = request.features
    if len(features) > MAX_FEATURES:
        raise InvalidInputError(
            f"has {len(features)} entries, at most {MAX_FEATURES}", field=f"{prefix}features"
        )
    if not prefix and max(map(len, features), default=0) > MAX_NAME_CHARS:
        name = next(key for key in features if len(key) > MAX_NAME_CHARS)
        raise InvalidInputError(
            f"feature name longer than {MAX_NAME_CHARS} characters",
            field=f"{prefix}features.{truncated(name)}",
        )
    if not request.signal_id:
        raise InvalidInputError("must not be empty", field=f"{prefix}signal_id")
    if request.side not in PREDICT_SIDES:
        raise InvalidInputError("must be one of buy, sell", field=f"{prefix}side")
    cluster = request.liquidity_cluster
    if cluster and cluster not in CLUSTERS:
        raise InvalidInputError("must be one of H, M, L", field=f"{prefix}liquidity_cluster")


def _fill(
    one: PredictResponse,
    request: PredictRequest,
    release: LoadedFamily,
    answers: FamilyPredictions,
    j: int,
    elapsed_ms: float,
) -> None:
    """Row ``j`` of ``answers`` into ``one`` (every value a member's output as is)."""
    conf = answers.conf_pat[j]
    entry = answers.entry_members[j]
    one.signal_id = request.signal_id
    one.side = request.side
    one.conf_pat = conf
    heads = one.heads
    head = heads["entry"]
    head.value = conf
    head.member = entry.name
    head.model_version = entry.version
    for name, column in answers.quantile.items():
        served = column.served[j]
        member = column.member
        head = heads[name]
        head.value = served
        head.member = member.name
        head.model_version = member.version
        head.alphas.extend(member.alphas)
        head.quantiles.extend(column.quantiles[j])
    one.sl_katr = answers.quantile["risk"].served[j]
    one.rr_target = answers.quantile["rr"].served[j]
    offset = answers.quantile["offset"].served[j]
    one.offset_katr = offset
    one.entry_style = entry_style(offset)
    one.family = release.name
    one.family_version = release.version
    one.liquidity_cluster = request.liquidity_cluster
    one.prediction_time_ms = elapsed_ms


class FamilyPlane:
    """Answers ``Predict`` and ``PredictBatch`` with the loaded family releases."""

    def __init__(self, families: FamilyStore, log: PredictionLog | None) -> None:
        self._families = families
        self._log = log
        self._predict_ok = REQUESTS.labels("Predict", "OK")
        self._batch_ok = REQUESTS.labels("PredictBatch", "OK")
        self._latency: dict[tuple[str, str, str], Any] = {}

    def predict(self, request: PredictRequest, *, logged_upstream: bool) -> PredictResponse:
        """Every head for one signal; ``logged_upstream``: the caller (the gateway) logs it."""
        started = time.perf_counter()
        try:
            check_predict_request(request)
            release = self._families.resolve(request.family or None, request.family_version or None)
            index = release.features
            matrix = np.array([index.values_in_order(request.features)], dtype=np.float32)
            index.check_finite(matrix)
            answers = predict_rows(release, matrix, [request.liquidity_cluster])
        except Exception as exc:
            REQUESTS.labels("Predict", status_code(exc)).inc()
            raise
        elapsed = time.perf_counter() - started
        elapsed_ms = elapsed * 1000.0
        answer = PredictResponse()
        _fill(answer, request, release, answers, 0, elapsed_ms)
        self._latency_of("Predict", release).observe(elapsed)
        self._predict_ok.inc()
        if self._log is not None and not logged_upstream:
            self._log.record(
                request.signal_id,
                release.version,
                answers.conf_pat[0],
                elapsed_ms,
                model_name=release.name,
            )
        return answer

    def predict_batch(
        self, request: PredictBatchRequest, *, logged_upstream: bool
    ) -> PredictBatchResponse:
        """Every head for several signals; one invalid request fails the call."""
        started = time.perf_counter()
        requests = request.requests
        try:
            groups = self._resolve_batch(requests)
            matrices = _matrices(groups, requests)
            results = [
                predict_rows(release, matrix, [requests[i].liquidity_cluster for i in positions])
                for (release, positions), matrix in zip(groups, matrices, strict=True)
            ]
        except Exception as exc:
            REQUESTS.labels("PredictBatch", status_code(exc)).inc()
            raise
        elapsed = time.perf_counter() - started
        elapsed_ms = elapsed * 1000.0
        answer = PredictBatchResponse()
        responses = answer.responses
        for _ in range(len(requests)):
            responses.add()
        for (release, positions), answers in zip(groups, results, strict=True):
            for j, i in enumerate(positions):
                _fill(responses[i], requests[i], release, answers, j, elapsed_ms)
            self._latency_of("PredictBatch", release).observe(elapsed)
        self._batch_ok.inc()
        if self._log is not None and not logged_upstream:
            per_row_ms = elapsed_ms / max(1, len(requests))
            for (release, positions), answers in zip(groups, results, strict=True):
                self._log.record_many(
                    [requests[i].signal_id for i in positions],
                    [release.version] * len(positions),
                    answers.conf_pat,
                    per_row_ms,
                    model_name=release.name,
                )
        return answer

    def _resolve_batch(
        self, requests: Sequence[PredictRequest]
    ) -> list[tuple[LoadedFamily, list[int]]]:
        """Check every request in order and group positions by release; errors name
        ``requests[i].``."""
        if len(requests) > MAX_BATCH_REQUESTS:
            raise InvalidInputError(
                f"has {len(requests)} requests, at most {MAX_BATCH_REQUESTS}", field="requests"
            )
        resolved: dict[tuple[str, str], tuple[LoadedFamily, list[int]]] = {}
        for i, one in enumerate(requests):
            prefix = f"requests[{i}]."
            check_predict_request(one, prefix)
            key = (one.family, one.family_version)
            group = resolved.get(key)
            if group is None:
                try:
                    release = self._families.resolve(key[0] or None, key[1] or None)
                except InvalidInputError as exc:
                    raise InvalidInputError(exc.reason, field=f"{prefix}{exc.field}") from exc
                group = resolved[key] = (release, [])
            group[1].append(i)
        # Two keys may name one release (the default, and it pinned): one group, one run.
        merged: dict[int, tuple[LoadedFamily, list[int]]] = {}
        for release, positions in resolved.values():
            merged.setdefault(id(release), (release, []))[1].extend(positions)
        return [(release, sorted(positions)) for release, positions in merged.values()]

    def _latency_of(self, method: str, release: LoadedFamily) -> Any:
        key = (method, release.name, release.version)
        child = self._latency.get(key)
        if child is None:
            child = self._latency[key] = PREDICT_SECONDS.labels(*key)
        return child


def _matrices(
    groups: list[tuple[LoadedFamily, list[int]]], requests: Sequence[PredictRequest]
) -> list[Matrix]:
    """One float32 matrix per release group; the first bad name in request order fails."""
    rows = [[requests[i].features for i in positions] for _, positions in groups]
    filled: list[Matrix | None] = [
        release.features.fill(group_rows)
        for (release, _), group_rows in zip(groups, rows, strict=True)
    ]
    if any(m is None for m in filled):
        # Some request is invalid: the per-row check names the first one in request order.
        release_of = {i: release for release, positions in groups for i in positions}
        for i, one in enumerate(requests):
            release_of[i].features.values_in_order(one.features, f"requests[{i}].")
        filled = [
            release.features.matrix(group_rows, positions)
            for (release, positions), group_rows in zip(groups, rows, strict=True)
        ]
    matrices = [m for m in filled if m is not None]
    for (release, positions), matrix in zip(groups, matrices, strict=True):
        release.features.check_finite(matrix, positions)
    return matrices
