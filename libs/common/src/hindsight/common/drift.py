"""Feature drift against a model's training reference: parsing, binning and PSI.

The trainer writes, per feature, ``reference_distributions`` into metrics.json: the decile
``edges`` of the train block, ``counts`` per value bin (bin = ``searchsorted(edges[1:-1],
x, side="right")``) and a ``missing`` count. The scorer (scored rows) and the trainer
(live ``signal.features``) compare live rows to it with these functions only, so the two
report the same numbers for the same rows:

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

over the value bins plus one missing bin (NaN), ``a`` the live share and ``e`` the
reference share, both floored at :data:`EPSILON` so that empty bins stay finite.

Binning is done in float32, the precision the model and the scorer's rows have: values
and edges are both rounded to float32 before ``searchsorted``. The trainer's float64
values then land in the same bins as the scorer's float32 copies of them, and a value
equal to an edge (usual for discrete features, whose deciles are values) stays in the bin
training counted it in (float32(0.7) < 0.7 would otherwise move all the 0.7s down a bin).

One rule for a reference entry, in both services:

- well-formed: ``edges`` a sorted list of finite numbers; ``counts`` a list of finite
  non-negative numbers, one per value bin (``len(edges) - 1``, or 1 for a single edge,
  i.e. a constant feature); ``missing`` a finite non-negative number (absent or null: 0).
- all-missing in training (``edges`` and ``counts`` empty, or counts summing to 0) with
  ``missing > 0`` is usable: one empty value bin, the missing bin at share 1, and no range
  (``low``/``high`` NaN, so every present live value is out of range). A feature that
  starts to arrive live although training never had it is the kind of pipeline change
  the drift alerts exist for; skipping it would hide it.
- anything else is malformed: not a mapping, a wrong type, a count mismatch, unsorted or
  non-finite edges, or no rows at all (counts and missing sum to 0).
  :func:`parse_reference` raises :class:`~hindsight.common.errors.InvalidInputError`
  naming the field; :func:`parse_references` leaves that feature out (no PSI for it) and
  tells ``on_skip`` why.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hindsight.common.errors import InvalidInputError

__all__ = [
    "EPSILON",
    "FeatureReference",
    "as_float32",
    "bin_counts",
    "bin_indices",
    "out_of_range",
    "parse_reference",
    "parse_references",
    "psi",
    "sample_psi",
]

EPSILON = 1e-4
"""Floor of a bin's share (empty bins), so that ln(a/e) stays finite."""

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True, eq=False)
class FeatureReference:
    """One feature's training distribution: inner bin edges and bin shares (missing last)."""

    name: str
    inner_edges: Float32Array
    """``edges[1:-1]`` in float32: a value's bin is ``searchsorted(inner_edges, x, "right")``."""
    expected: FloatArray
    """Reference shares per value bin, then the missing share (sums to 1)."""
    low: float
    """First edge (float32-rounded): the smallest value seen in training; NaN if none."""
    high: float
    """Last edge (float32-rounded): the largest value seen in training; NaN if none."""

    @property
    def value_bins(self) -> int:
        """Number of value bins; the missing bin is the one after them."""
        return len(self.expected) - 1

    @property
    def missing_bin(self) -> int:
        """Index of the missing (NaN) bin: the last one."""
        return len(self.expected) - 1

    @property
    def missing_share(self) -> float:
        """Share of training rows without the feature."""
        return float(self.expected[-1])


def as_float32(values: npt.ArrayLike) -> Float32Array:
    """``values`` as float32 (no copy when they already are); beyond float32's range → ±inf."""
    if isinstance(values, np.ndarray) and values.dtype == np.float32:
        return values  # the scorer's rows: skip errstate, a cost per feature per flush
    with np.errstate(over="ignore"):
        return np.asarray(values, dtype=np.float32)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _numbers(raw: Mapping[str, Any], key: str, field: str) -> FloatArray:
    value = raw.get(key)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise InvalidInputError("must be a list of numbers", field=field)
    if not all(_is_number(v) for v in value):
        raise InvalidInputError("must be a list of numbers", field=field)
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise InvalidInputError("must be finite", field=field)
    return array


def parse_reference(name: str, raw: Any) -> FeatureReference:
    """One feature's reference entry; raises ``InvalidInputError`` naming the bad field."""
    field = f"reference_distributions.{name}"
    if not isinstance(raw, Mapping):
        raise InvalidInputError("must be an object with edges, counts, missing", field=field)
    edges = _numbers(raw, "edges", f"{field}.edges")
    counts = _numbers(raw, "counts", f"{field}.counts")
    missing_raw = raw.get("missing")
    if missing_raw is not None and not _is_number(missing_raw):
        raise InvalidInputError("must be a number", field=f"{field}.missing")
    missing = float(missing_raw or 0)
    if not math.isfinite(missing) or missing < 0:
        raise InvalidInputError("must be a finite number >= 0", field=f"{field}.missing")
    if np.any(np.diff(edges) < 0):
        raise InvalidInputError("must be sorted ascending", field=f"{field}.edges")
    if np.any(counts < 0):
        raise InvalidInputError("must be >= 0", field=f"{field}.counts")
    if len(edges) == 0:
        if len(counts) != 0:
            raise InvalidInputError("must be empty when edges is", field=f"{field}.counts")
        counts = np.zeros(1)  # all missing in training: present values land in an empty bin
    elif len(counts) != max(len(edges) - 1, 1):
        raise InvalidInputError(
            f"has {len(counts)} bins for {len(edges)} edges (expected {max(len(edges) - 1, 1)})",
            field=f"{field}.counts",
        )
    total = float(counts.sum()) + missing
    if total <= 0:
        raise InvalidInputError("no rows: counts and missing sum to 0", field=field)
    with np.errstate(over="ignore"):
        rounded = edges.astype(np.float32)
    low, high = (float(rounded[0]), float(rounded[-1])) if len(edges) else (math.nan, math.nan)
    return FeatureReference(
        name=name,
        inner_edges=rounded[1:-1],
        expected=np.append(counts, missing) / total,
        low=low,
        high=high,
    )


def parse_references(
    raw: Any,
    feature_names: Sequence[str] | None = None,
    *,
    on_skip: Callable[[str, str], None] | None = None,
) -> dict[str, FeatureReference]:
    """The usable references of ``reference_distributions``, by feature name.

    Of ``feature_names`` when given (in that order), else of every entry. A feature that
    is absent or malformed is left out and reported to ``on_skip(name, reason)``; a
    ``raw`` that is not a mapping gives an empty dict.
    """
    if not isinstance(raw, Mapping):
        return {}
    names = list(feature_names) if feature_names is not None else [str(k) for k in raw]
    out: dict[str, FeatureReference] = {}
    for name in names:
        if name not in raw:
            if on_skip is not None:
                on_skip(name, f"reference_distributions.{name}: absent")
            continue
        try:
            out[name] = parse_reference(name, raw[name])
        except InvalidInputError as exc:
            if on_skip is not None:
                on_skip(name, str(exc))
    return out


def bin_indices(reference: FeatureReference, values: npt.ArrayLike) -> IntArray:
    """Bin of each value (shape kept): value bins by the edges, NaN → the missing bin."""
    x = as_float32(values)
    bins: IntArray = np.asarray(np.searchsorted(reference.inner_edges, x, side="right"))
    bins[np.isnan(x)] = reference.missing_bin  # searchsorted puts NaN after every edge
    return bins


def bin_counts(reference: FeatureReference, values: npt.ArrayLike) -> IntArray:
    """Rows per bin (value bins, then missing): ``len(reference.expected)`` counts."""
    found: IntArray = np.bincount(
        bin_indices(reference, values).ravel(), minlength=len(reference.expected)
    )
    return found


def out_of_range(reference: FeatureReference, values: npt.ArrayLike) -> BoolArray:
    """Which values are present but outside the training range ``[low, high]``."""
    x = as_float32(values)
    inside = (x >= reference.low) & (x <= reference.high)  # False for every x if NaN bounds
    found: BoolArray = ~np.isnan(x) & ~inside
    return found


def psi(actual: FloatArray, expected: FloatArray, *, epsilon: float = EPSILON) -> FloatArray:
    """PSI over the last axis of two share arrays (a vector, or rows = features)."""
    a = np.maximum(actual, epsilon)
    e = np.maximum(expected, epsilon)
    result: FloatArray = np.sum((a - e) * np.log(a / e), axis=-1)
    return result


def sample_psi(reference: FeatureReference, values: npt.ArrayLike) -> float:
    """PSI of one feature's sample (NaN = missing) against its reference."""
    counts = bin_counts(reference, values)
    rows = int(counts.sum())
    if rows == 0:
        raise ValueError("PSI of an empty sample")
    return float(psi(counts / rows, reference.expected))
