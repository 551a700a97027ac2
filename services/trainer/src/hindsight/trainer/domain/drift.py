"""Drift and data quality of live feature rows against a model's training reference.

The reference is the card's ``reference_distributions`` (written by
:func:`hindsight.trainer.domain.training.reference_distributions`): per feature the decile
``edges`` of the train block, ``counts`` per bin (bin = ``searchsorted(edges[1:-1], x,
side="right")``) and a ``missing`` count. Over a rolling window of the last ``window`` rows,
per feature:

- PSI = sum_i (a_i - e_i) ln(a_i / e_i) over the value bins plus one missing bin (shares
  floored at ``EPSILON``), the same definition as the scorer's, so the numbers compare;
- missing share: rows where the feature is absent or null;
- out-of-range share: present values outside the reference's [min, max] (first and last
  edge), i.e. values the model never saw in training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["EPSILON", "FeatureReference", "LiveDrift", "LiveDriftReport", "parse_references"]

EPSILON = 1e-4
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FeatureReference:
    """One feature's training distribution."""

    name: str
    inner_edges: FloatArray
    expected: FloatArray
    """Shares per value bin, then the missing share (sums to 1)."""
    low: float
    high: float

    @property
    def missing_share(self) -> float:
        """Share of rows without the feature in training."""
        return float(self.expected[-1])


def _reference(name: str, raw: Any) -> FeatureReference | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        edges = np.asarray(raw.get("edges") or [], dtype=np.float64)
        counts = np.asarray(raw.get("counts") or [], dtype=np.float64)
        missing = float(raw.get("missing") or 0)
    except (TypeError, ValueError):
        return None
    if len(edges) < 2 or len(counts) != len(edges) - 1 or not np.all(np.isfinite(edges)):
        return None
    if np.any(counts < 0) or missing < 0 or counts.sum() + missing <= 0:
        return None
    expected = np.append(counts, missing) / (counts.sum() + missing)
    return FeatureReference(name, edges[1:-1], expected, float(edges[0]), float(edges[-1]))


def parse_references(
    raw: Any, feature_names: Sequence[str] | None = None
) -> dict[str, FeatureReference]:
    """Usable references by feature (of ``feature_names`` when given); malformed ones skipped."""
    if not isinstance(raw, Mapping):
        return {}
    names = list(feature_names) if feature_names is not None else [str(k) for k in raw]
    out = {}
    for name in names:
        ref = _reference(name, raw.get(name))
        if ref is not None:
            out[name] = ref
    return out


@dataclass(frozen=True, slots=True)
class LiveDriftReport:
    """Per-feature numbers of the window; the dicts are None until ``min_rows`` rows."""

    rows: int
    psi: dict[str, float] | None
    missing_share: dict[str, float] | None
    out_of_range_share: dict[str, float] | None

    def over(self, threshold: float) -> int:
        """Features with PSI above ``threshold``."""
        return sum(1 for v in (self.psi or {}).values() if v > threshold)


class LiveDrift:
    """A ring of the last ``window`` feature rows and their drift against the references."""

    def __init__(
        self, references: Mapping[str, FeatureReference], *, window: int = 2000, min_rows: int = 200
    ) -> None:
        if window < 1 or min_rows < 1:
            raise ValueError("window and min_rows must be at least 1")
        if not references:
            raise ValueError("no feature has a reference distribution")
        self.references = dict(references)
        self.features = list(self.references)
        self.window = window
        self.min_rows = min_rows
        self._ring = np.full((window, len(self.features)), np.nan)
        self._head = 0
        self._filled = 0

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return self._filled

    def observe(self, features: Mapping[str, float | None]) -> None:
        """Add one row (absent or None = missing); O(features)."""
        row = self._ring[self._head]
        for j, name in enumerate(self.features):
            value = features.get(name)
            row[j] = math.nan if value is None else float(value)
        self._head = (self._head + 1) % self.window
        self._filled = min(self.window, self._filled + 1)

    def report(self) -> LiveDriftReport:
        """PSI, missing share and out-of-range share per feature over the window."""
        n = self._filled
        if n < self.min_rows:
            return LiveDriftReport(n, None, None, None)
        values = self._ring[:n]
        psi: dict[str, float] = {}
        missing: dict[str, float] = {}
        out_of_range: dict[str, float] = {}
        for j, name in enumerate(self.features):
            ref = self.references[name]
            column = values[:, j]
            absent = np.isnan(column)
            present = column[~absent]
            bins = np.searchsorted(ref.inner_edges, present, side="right")
            counts = np.bincount(bins, minlength=len(ref.expected) - 1).astype(np.float64)
            actual = np.append(counts, float(absent.sum())) / n
            a = np.maximum(actual, EPSILON)
            e = np.maximum(ref.expected, EPSILON)
            psi[name] = float(np.sum((a - e) * np.log(a / e)))
            missing[name] = float(absent.sum()) / n
            out_of_range[name] = float(np.sum((present < ref.low) | (present > ref.high))) / n
        return LiveDriftReport(n, psi, missing, out_of_range)
