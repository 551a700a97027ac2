"""Scoring: validated rows in, calibrated probabilities, intervals and contributions out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hindsight.scorer.domain.models import LoadedModel

__all__ = ["BatchItem", "Score", "score_batch", "score_one"]

BIAS = "bias"


@dataclass(frozen=True, slots=True)
class Score:
    """The answer for one request."""

    p_success: float
    ci_low: float
    ci_high: float
    contributions: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch, resolved to its model."""

    model: LoadedModel
    features: Mapping[str, float]
    explain: bool


def _contributions(model: LoadedModel, row: npt.NDArray[np.float64]) -> dict[str, float]:
    values = row.tolist()
    result = dict(zip(model.features.names, values[:-1], strict=True))
    result[BIAS] = values[-1]
    return result


def _finish(model: LoadedModel, p: float) -> tuple[float, float, float]:
    p = min(1.0, max(0.0, p))
    low, high = model.intervals.interval(p)
    return p, low, high


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


def score_batch(items: Sequence[BatchItem]) -> list[Score]:
    """Score requests in order: one matrix and one model run per (model, version).

    Every request is validated before anything runs; an error names ``requests[i].``.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    rows: list[list[float]] = []
    for i, item in enumerate(items):
        rows.append(item.model.features.values_in_order(item.features, f"requests[{i}]."))
        groups.setdefault((item.model.name, item.model.version), []).append(i)
    matrices = {}
    for key, positions in groups.items():
        model = items[positions[0]].model
        matrix = np.array([rows[i] for i in positions], dtype=np.float32)
        matrix = matrix.reshape(len(positions), model.features.width)
        model.features.check_finite(matrix, positions)
        matrices[key] = matrix
    for key, matrix in matrices.items():
        drift = items[groups[key][0]].model.drift
        if drift is not None:  # only once every request of the batch is valid
            drift.record_many(matrix)
    results: list[Score | None] = [None] * len(items)
    for key, positions in groups.items():
        model = items[positions[0]].model
        matrix = matrices[key]
        probabilities = model.predictor.predict(matrix).tolist()
        explained = [j for j, i in enumerate(positions) if items[i].explain]
        contributions = model.predictor.contributions(matrix[explained]) if explained else None
        by_row = dict(zip(explained, range(len(explained)), strict=True))
        for j, i in enumerate(positions):
            p, low, high = _finish(model, probabilities[j])
            contrib = None
            if contributions is not None and j in by_row:
                contrib = _contributions(model, contributions[by_row[j]])
            results[i] = Score(p, low, high, contrib)
    return [r for r in results if r is not None]
