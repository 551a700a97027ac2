"""Scoring: validated rows in, calibrated probabilities, intervals and contributions out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hindsight.common.artifacts import P_MIN
from hindsight.common.errors import InvalidInputError
from hindsight.scorer.domain.features import Matrix, packed_rows
from hindsight.scorer.domain.intervals import Z_95, IntervalTable
from hindsight.scorer.domain.models import LoadedModel

__all__ = [
    "BatchScores",
    "Score",
    "score_columns",
    "score_one",
    "score_packed",
]

BIAS = "bias"

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Score:
    """The answer for one request."""

    p_success: float
    ci_low: float
    ci_high: float
    contributions: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class BatchScores:
    """The answers of a batch as columns in request order (no object per row)."""

    p_success: list[float]
    ci_low: list[float]
    ci_high: list[float]
    contributions: list[dict[str, float] | None]


def _contributions(model: LoadedModel, row: npt.NDArray[np.float64]) -> dict[str, float]:
    values = row.tolist()
    result = dict(zip(model.features.names, values[:-1], strict=True))
    result[BIAS] = values[-1]
    return result


def _finish(model: LoadedModel, p: float) -> tuple[float, float, float]:
    p = min(1.0 - P_MIN, max(P_MIN, p)) if p == p else P_MIN  # NaN: the "don't trade" end
    low, high = model.intervals.interval(p)
    return p, low, high


def _clip(p: Floats) -> Floats:
    """:func:`_finish`'s clip to ``[P_MIN, 1 - P_MIN]`` per element, NaN to ``P_MIN``."""
    return np.where(p > P_MIN, np.where(p < 1.0 - P_MIN, p, 1.0 - P_MIN), P_MIN)


def _intervals(table: IntervalTable, p: Floats) -> tuple[Floats, Floats]:
    """:meth:`IntervalTable.interval` for every element, with the same float operations.

    Written out element-wise with numpy so that a batch costs a few array operations
    instead of a Python call per row; results are bit-identical to the scalar path.
    """
    if not table.los:
        return np.zeros_like(p), np.ones_like(p)
    index = np.searchsorted(np.asarray(table.los), p, side="right") - 1
    n = np.asarray(table.ns, dtype=np.float64)[np.maximum(index, 0)]
    known = n > 0
    n = np.where(known, n, 1.0)  # n = 0 gives [0, 1] below; 1 only avoids dividing by 0
    z = Z_95
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * np.sqrt(np.maximum(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n)) / denom
    low = np.maximum(0.0, np.minimum(centre - half, p))
    high = np.minimum(1.0, np.maximum(centre + half, p))
    return np.where(known, low, 0.0), np.where(known, high, 1.0)


def score_one(model: LoadedModel, features: Mapping[str, float], *, explain: bool) -> Score:
    """Validate and score one request on its model's preallocated row (no await inside)."""
    index = model.features
    row = model.row
    row[0] = index.values_in_order(features)
    index.check_finite(row)
    drift = model.drift
    if drift is not None:
        drift.record(row)  # one row copy into a ring; binned off the request path
    p, low, high = _finish(model, float(model.predictor.predict(row)[0]))
    contributions = (
        _contributions(model, model.predictor.contributions(row)[0]) if explain else None
    )
    return Score(p, low, high, contributions)


def _groups(models: Sequence[LoadedModel]) -> list[tuple[LoadedModel, list[int]]]:
    """Batch positions per model, in order of first appearance."""
    first = models[0]
    if all(m is first for m in models):  # the usual batch: one model
        return [(first, list(range(len(models))))]
    groups: dict[tuple[str, str], tuple[LoadedModel, list[int]]] = {}
    for i, model in enumerate(models):
        groups.setdefault((model.name, model.version), (model, []))[1].append(i)
    return list(groups.values())


def _matrices(
    groups: list[tuple[LoadedModel, list[int]]],
    features: Sequence[Mapping[str, float]],
) -> list[Matrix]:
    """One float32 matrix per group; names are checked first, in request order."""
    single = len(groups) == 1 and len(groups[0][1]) == len(features)
    filled = [
        model.features.fill(features if single else [features[i] for i in positions])
        for model, positions in groups
    ]
    if any(m is None for m in filled):
        # Some request is invalid: the slow path names the first one in request order.
        model_of = {i: model for model, positions in groups for i in positions}
        for i, row in enumerate(features):
            model_of[i].features.values_in_order(row, f"requests[{i}].")
        filled = [
            model.features.matrix([features[i] for i in positions], positions)
            for model, positions in groups
        ]
    matrices = [m for m in filled if m is not None]
    for (model, positions), matrix in zip(groups, matrices, strict=True):
        model.features.check_finite(matrix, positions)
    return matrices


def score_columns(
    models: Sequence[LoadedModel],
    features: Sequence[Mapping[str, float]],
    explain: Sequence[bool],
) -> BatchScores:
    """Score a batch (request ``i``: ``models[i]``, ``features[i]``, ``explain[i]``).

    One matrix and one model run per (model, version). Every request is validated before
    anything runs; an error names ``requests[i].``.
    """
    n = len(models)
    if not n:
        return BatchScores([], [], [], [])
    groups = _groups(models)
    return _score_groups(groups, _matrices(groups, features), explain, n)


def score_packed(
    models: Sequence[LoadedModel],
    *,
    feature_names: Sequence[str],
    values: Sequence[Sequence[float]],
    map_sizes: Sequence[int],
    explain: Sequence[bool],
) -> BatchScores:
    """Score a packed batch: ``values[i]`` in ``feature_names`` order (see the proto).

    The names are mapped to each model's columns once per (model, version); then the same
    checks, drift record and model runs as :func:`score_columns`, so the same rows give
    the same answers bit for bit. ``map_sizes[i]`` (request ``i``'s ``features`` size)
    must be 0. Errors name ``feature_names`` or ``requests[i].``, batch-level first.
    """
    n = len(models)
    if not n:
        return BatchScores([], [], [], [])
    groups = _groups(models)
    columns = [_columns(model, feature_names) for model, _ in groups]
    packed = packed_rows(values, len(feature_names), map_sizes)
    single = len(groups) == 1
    matrices: list[Matrix] = []
    for (model, positions), cols in zip(groups, columns, strict=True):
        matrix = packed if single else packed[positions]
        if cols is not None:
            matrix = np.ascontiguousarray(matrix[:, cols])
        model.features.check_finite(matrix, positions)
        matrices.append(matrix)
    return _score_groups(groups, matrices, explain, n)


def _columns(model: LoadedModel, feature_names: Sequence[str]) -> npt.NDArray[np.intp] | None:
    """The model's column map of the batch's names; errors also say which model."""
    try:
        return model.features.columns_of(feature_names)
    except InvalidInputError as exc:
        reason = f"{exc.reason} (model {model.name!r} version {model.version!r})"
        raise InvalidInputError(reason, field=exc.field) from exc


def _score_groups(
    groups: list[tuple[LoadedModel, list[int]]],
    matrices: list[Matrix],
    explain: Sequence[bool],
    n: int,
) -> BatchScores:
    """Run every group's valid matrix and put the answers back in request order."""
    for (model, _), matrix in zip(groups, matrices, strict=True):
        if model.drift is not None:  # only once every request of the batch is valid
            model.drift.record_many(matrix)
    if len(groups) == 1:
        model, _ = groups[0]
        p_success, low, high, contributions = _run(model, matrices[0], explain)
        return BatchScores(p_success, low, high, contributions)
    p_all: list[float] = [0.0] * n
    low_all: list[float] = [0.0] * n
    high_all: list[float] = [0.0] * n
    contrib_all: list[dict[str, float] | None] = [None] * n
    for (model, positions), matrix in zip(groups, matrices, strict=True):
        p_success, low, high, contributions = _run(model, matrix, [explain[i] for i in positions])
        for j, i in enumerate(positions):
            p_all[i], low_all[i], high_all[i] = p_success[j], low[j], high[j]
            contrib_all[i] = contributions[j]
    return BatchScores(p_all, low_all, high_all, contrib_all)


def _run(
    model: LoadedModel, matrix: Matrix, explain: Sequence[bool]
) -> tuple[list[float], list[float], list[float], list[dict[str, float] | None]]:
    """One model run on a valid matrix: probabilities, intervals, asked-for contributions."""
    p = _clip(model.predictor.predict(matrix).astype(np.float64))
    low, high = _intervals(model.intervals, p)
    contributions: list[dict[str, float] | None] = [None] * len(matrix)
    if any(explain):
        explained = [j for j, flag in enumerate(explain) if flag]
        for j, row in zip(explained, model.predictor.contributions(matrix[explained]), strict=True):
            contributions[j] = _contributions(model, row)
    return p.tolist(), low.tolist(), high.tolist(), contributions
