"""Online feature drift: PSI of the last N scored rows against the card's reference.

The reference parsing, the binning and the PSI are :mod:`hindsight.common.drift`'s (the
trainer's live drift uses the same functions, so both report the same PSI for the same
rows): per feature, decile value bins of the train block plus one missing (NaN) bin, and

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

over the bins (``a`` = live share, ``e`` = reference share, both floored at ``EPSILON``).
A :class:`DriftMonitor` (one per loaded model version) keeps those bins over a rolling
window of the last ``window`` scored rows.

The hot path only copies the already-validated float32 row into a small ring of pending
rows (:meth:`DriftMonitor.record`, no allocation); a periodic task takes them
(:meth:`DriftMonitor.take`) and bins them with numpy (:meth:`DriftMonitor.add`), updating
the window's counts incrementally, so the cost is O(features) per row and none of it is
on the request path. ``take`` and ``record`` run on the event loop; ``add`` and
``report`` must not run concurrently with each other (one task calls both in turn).
If more rows than the window arrive between two flushes, only the newest ``window`` are
kept: the window is "the last N rows" either way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hindsight.common.drift import FeatureReference, bin_indices, parse_references, psi

__all__ = ["DriftMonitor", "DriftReport"]

logger = logging.getLogger(__name__)


def _skipped(name: str, reason: str) -> None:
    logger.warning("no usable reference distribution for feature %s (%s); no PSI", name, reason)


@dataclass(frozen=True, slots=True)
class DriftReport:
    """What a monitor says at one moment."""

    rows: int
    """Rows in the window."""
    psi: dict[str, float] | None
    """PSI per monitored feature; None until ``min_rows`` rows were seen."""

    @property
    def max_psi(self) -> float | None:
        """The largest feature PSI (None while not reported)."""
        if not self.psi:
            return None
        return max(self.psi.values())

    def over(self, threshold: float) -> int:
        """Number of features with PSI above ``threshold``."""
        return sum(1 for v in (self.psi or {}).values() if v > threshold)


class DriftMonitor:
    """Rolling-window feature distributions of one model version, and their PSI."""

    def __init__(
        self,
        feature_names: Sequence[str],
        references: Mapping[str, FeatureReference],
        *,
        window: int = 2000,
        min_rows: int = 500,
    ) -> None:
        if window < 1 or min_rows < 1:
            raise ValueError("window and min_rows must be at least 1")
        names = list(feature_names)
        self.features = [n for n in names if n in references]
        if not self.features:
            raise ValueError("no feature has a reference distribution")
        self.window = window
        self.min_rows = min_rows
        refs = [references[n] for n in self.features]
        self._references = refs
        self._columns = np.array([names.index(n) for n in self.features], dtype=np.intp)
        self._bins = int(max(r.value_bins for r in refs)) + 1
        self._expected = np.zeros((len(refs), self._bins))
        for j, r in enumerate(refs):
            # Value bins first, the missing share in the feature's own last index; padded
            # bins stay 0 in both expected and actual and add nothing to the PSI.
            self._expected[j, : len(r.expected)] = r.expected
        width = len(names)
        # Pending rows (hot path): a ring of at most ``window`` raw float32 rows.
        self._pending = np.zeros((window, width), dtype=np.float32)
        self._pending_count = 0
        # The window: a ring of flat bin indices (feature * bins + bin) and their counts.
        self._offsets = np.arange(len(refs), dtype=np.int64) * self._bins
        self._ring = np.zeros((window, len(refs)), dtype=np.int64)
        self._filled = 0
        self._head = 0
        self._counts = np.zeros(len(refs) * self._bins, dtype=np.int64)

    @classmethod
    def from_card(
        cls,
        feature_names: Sequence[str],
        card_extra: Mapping[str, Any] | None,
        *,
        window: int,
        min_rows: int,
    ) -> DriftMonitor | None:
        """A monitor for a card, or None when it carries no usable reference."""
        raw = (card_extra or {}).get("reference_distributions")
        references = parse_references(raw, feature_names, on_skip=_skipped)
        if not references:
            return None
        return cls(feature_names, references, window=window, min_rows=min_rows)

    @property
    def rows(self) -> int:
        """Rows currently in the window (pending rows not counted)."""
        return self._filled

    def record(self, row: npt.NDArray[np.float32]) -> None:
        """Queue one validated row (shape ``(width,)`` or ``(1, width)``): one copy, O(1)."""
        count = self._pending_count
        self._pending[count % self.window] = row
        self._pending_count = count + 1

    def record_many(self, matrix: npt.NDArray[np.float32]) -> None:
        """Queue validated rows; only the newest ``window`` of them matter."""
        rows = matrix[-self.window :]
        count = self._pending_count
        self._pending[(count + np.arange(len(rows))) % self.window] = rows
        self._pending_count = count + len(rows)

    def take(self) -> npt.NDArray[np.float32] | None:
        """Copy out the pending rows (oldest first) and clear them; None when there are none.

        Cheap (one copy of at most ``window`` rows); :meth:`add` can then bin the copy in
        another thread while the hot path keeps queueing.
        """
        count = self._pending_count
        if count == 0:
            return None
        self._pending_count = 0
        n = min(count, self.window)
        start = count % self.window if count > self.window else 0
        order = (np.arange(n) + start) % self.window
        taken: npt.NDArray[np.float32] = self._pending[order]
        return taken

    def flush(self) -> int:
        """Bin the pending rows into the window now; returns how many were added."""
        rows = self.take()
        if rows is None:
            return 0
        self.add(rows)
        return len(rows)

    def add(self, matrix: npt.NDArray[np.floating[Any]]) -> None:
        """Bin rows (full feature width, oldest first) into the rolling window now."""
        rows = np.asarray(matrix)[-self.window :]
        n = len(rows)
        if n == 0:
            return
        values = rows[:, self._columns]
        bins = np.empty((n, len(self.features)), dtype=np.int64)
        for j, reference in enumerate(self._references):
            bins[:, j] = bin_indices(reference, values[:, j])
        flat = bins + self._offsets
        positions = (self._head + np.arange(n)) % self.window
        size = len(self._counts)
        evicted = max(0, self._filled + n - self.window)
        if evicted > 0:
            # Occupied slots are the last ``evicted`` positions (all of them once full).
            old = self._ring[positions[n - evicted :]]
            self._counts -= np.bincount(old.ravel(), minlength=size)
        self._counts += np.bincount(flat.ravel(), minlength=size)
        self._ring[positions] = flat
        self._head = int((self._head + n) % self.window)
        self._filled = min(self.window, self._filled + n)

    def report(self) -> DriftReport:
        """PSI per feature of the window (None until ``min_rows`` rows are in it)."""
        rows = self._filled
        if rows < self.min_rows:
            return DriftReport(rows, None)
        actual = self._counts.reshape(len(self.features), self._bins) / rows
        values = psi(actual, self._expected)
        return DriftReport(
            rows,
            {
                name: float(v) if math.isfinite(v) else math.inf
                for name, v in zip(self.features, values.tolist(), strict=True)
            },
        )
