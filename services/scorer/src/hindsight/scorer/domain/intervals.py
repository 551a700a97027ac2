"""The uncertainty interval around ``p_success``: Wilson score interval per calibration bin.

``n`` is the number of validation rows whose calibrated probability fell in the same bin
as ``p_success`` (``interval_bins`` of the model card). With ``n = 0`` nothing is known:
the interval is ``[0, 1]``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Z_95", "IntervalTable", "wilson_interval"]

Z_95 = 1.959963984540054


def wilson_interval(p: float, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval at proportion ``p`` with ``n`` trials, clamped to contain ``p``."""
    if n <= 0:
        return 0.0, 1.0
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(max(p * (1.0 - p), 0.0) / n + z2 / (4.0 * n * n)) / denom
    low = max(0.0, min(centre - half, p))
    high = min(1.0, max(centre + half, p))
    return low, high


@dataclass(frozen=True, slots=True)
class IntervalTable:
    """Bin edges and validation counts of one model, for a bisect per score."""

    los: tuple[float, ...]
    ns: tuple[int, ...]

    @classmethod
    def from_bins(cls, bins: Sequence[tuple[float, float, int]]) -> IntervalTable:
        """Build from ``(lo, hi, n)`` triples (any order)."""
        ordered = sorted(bins)
        return cls(los=tuple(b[0] for b in ordered), ns=tuple(b[2] for b in ordered))

    def n_at(self, p: float) -> int:
        """Validation rows of the bin that ``p`` falls in (0 when there are no bins)."""
        if not self.los:
            return 0
        index = bisect.bisect_right(self.los, p) - 1
        return self.ns[max(index, 0)]

    def interval(self, p: float) -> tuple[float, float]:
        """``(ci_low, ci_high)`` at ``p``."""
        return wilson_interval(p, self.n_at(p))
