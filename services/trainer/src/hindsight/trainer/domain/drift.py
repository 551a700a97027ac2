"""Drift and data quality of live feature rows against a model's training reference.

The reference is the card's ``reference_distributions`` (written by
:func:`hindsight.trainer.domain.training.reference_distributions`), parsed, binned and
compared with :mod:`hindsight.common.drift`, the same code as the scorer's drift monitor,
so the two report the same PSI for the same rows. Over a rolling window of the last
``window`` rows, per feature:

- PSI = sum_i (a_i - e_i) ln(a_i / e_i) over the value bins plus one missing bin (shares
  floored at ``EPSILON``);
- missing share: rows where the feature is absent, null or NaN;
- out-of-range share: present values outside the reference's [low, high] (first and last
  edge), i.e. values the model never saw in training (every present value, for a
  feature that was all-missing in training).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hindsight.common.drift import FeatureReference, bin_counts, out_of_range, psi

__all__ = ["LiveDrift", "LiveDriftReport"]


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
        psi_of: dict[str, float] = {}
        missing: dict[str, float] = {}
        outside: dict[str, float] = {}
        for j, name in enumerate(self.features):
            reference = self.references[name]
            column = values[:, j]
            counts = bin_counts(reference, column)
            psi_of[name] = float(psi(counts / n, reference.expected))
            missing[name] = float(counts[reference.missing_bin]) / n
            outside[name] = float(np.count_nonzero(out_of_range(reference, column))) / n
        return LiveDriftReport(n, psi_of, missing, outside)
