"""Feature validation: a request's ``features`` map against the model's feature list.

Fills float32 rows in the ONNX input's column order. Errors name the field the way the
Scoring contract says: ``features.<name>`` (prefixed ``requests[i].`` in a batch). A packed
batch (``feature_names`` once, ``feature_values`` per row) is read by :func:`packed_rows`
and mapped to a model's columns by :meth:`FeatureIndex.columns_of`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from hindsight.common.errors import InvalidInputError
from hindsight.common.limits import truncated

__all__ = ["FeatureIndex", "Matrix", "packed_rows"]

Matrix = npt.NDArray[np.float32]

_Getter = Callable[[Mapping[str, float]], Sequence[float]]


def _getter(names: tuple[str, ...]) -> _Getter:
    """One C-level call reading every name of a map, in order (itemgetter, as a sequence)."""
    if len(names) == 1:
        only = names[0]
        return lambda features: (features[only],)
    if not names:
        return lambda features: ()
    return itemgetter(*names)


@dataclass(slots=True)
class FeatureIndex:
    """A model's feature list: name → column, which may be NaN, and a fast reader.

    The fast path never lists a request's keys (that costs a str per key): a map of
    exactly ``width`` entries in which every name is found holds exactly the model's names.
    Reading a missing key of a protobuf map inserts a default entry, so "found" is checked
    as "the map did not grow"; a plain dict raises ``KeyError`` instead. Either way a failed
    fast path falls back to the per-key check, which names the field.
    """

    names: tuple[str, ...]
    nan_allowed: frozenset[str]
    column: dict[str, int] = field(init=False)
    nan_ok: npt.NDArray[np.bool_] = field(init=False)
    _values: _Getter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError("duplicate feature names")
        self.column = {name: i for i, name in enumerate(self.names)}
        self.nan_ok = np.array([n in self.nan_allowed for n in self.names], dtype=np.bool_)
        self._values = _getter(self.names)

    @classmethod
    def of(cls, names: Sequence[str], nan_allowed: Sequence[str] = ()) -> FeatureIndex:
        """Build the index of a feature list (order = ONNX input column order)."""
        return cls(names=tuple(names), nan_allowed=frozenset(nan_allowed))

    @property
    def width(self) -> int:
        """Number of features (ONNX input columns)."""
        return len(self.names)

    def values_in_order(self, features: Mapping[str, float], prefix: str = "") -> list[float]:
        """The request's values in column order, or InvalidInputError naming the field.

        Checks names (unknown, missing) here; finiteness is checked on the whole matrix by
        :meth:`check_finite`.
        """
        width = len(self.names)
        if len(features) == width:
            try:
                values = self._values(features)
            except KeyError:
                pass
            else:
                if len(features) == width:  # nothing inserted: every name was there
                    return list(values)
        return self._checked(features, prefix)

    def matrix(self, rows: Sequence[Mapping[str, float]], positions: Sequence[int]) -> Matrix:
        """The rows as a float32 ``(len(rows), width)`` matrix, or InvalidInputError.

        ``positions[r]`` is the batch index of ``rows[r]``; an error names the first
        invalid row as ``requests[i].features.<name>``. Finiteness is not checked here.
        """
        matrix = self.fill(rows)
        if matrix is not None:
            return matrix
        checked = [
            self._checked(r, f"requests[{i}].") for r, i in zip(rows, positions, strict=True)
        ]
        return np.array(checked, dtype=np.float32).reshape(len(rows), self.width)

    def fill(self, rows: Sequence[Mapping[str, float]]) -> Matrix | None:
        """The rows as a float32 matrix when every row holds exactly the names; else None.

        No Python bytecode runs per value: lengths, reads and the conversion are C loops.
        """
        width = len(self.names)
        n = len(rows)
        if n == 0:
            return np.empty((0, width), dtype=np.float32)
        if set(map(len, rows)) != {width}:
            return None
        try:
            flat = np.fromiter(
                chain.from_iterable(map(self._values, rows)), dtype=np.float32, count=n * width
            )
        except KeyError:
            return None
        if set(map(len, rows)) != {width}:  # a protobuf map grew: some name was missing
            return None
        return flat.reshape(n, width)

    def columns_of(self, feature_names: Sequence[str]) -> npt.NDArray[np.intp] | None:
        """Model column ``j`` is packed position ``result[j]``; None when already in order.

        The names must be exactly this feature set, in any order: a duplicate, unknown or
        missing name is InvalidInputError naming ``feature_names`` and the name.
        """
        given = tuple(feature_names)
        if given == self.names:
            return None
        position: dict[str, int] = {}
        column = self.column
        for k, name in enumerate(given):
            if name in position:
                raise InvalidInputError(
                    f"duplicate name {truncated(name)!r}", field="feature_names"
                )
            if name not in column:
                raise InvalidInputError(
                    f"unknown feature {truncated(name)!r}", field="feature_names"
                )
            position[name] = k
        if len(position) != len(self.names):
            missing = next(name for name in self.names if name not in position)
            raise InvalidInputError(f"missing feature {missing!r}", field="feature_names")
        return np.array([position[name] for name in self.names], dtype=np.intp)

    def _checked(self, features: Mapping[str, float], prefix: str) -> list[float]:
        """Per-key check: the first unknown key, else the first missing name, is an error.

        Only keys known to be present are read: a protobuf map inserts a default value
        when a missing key is read.
        """
        keys = list(features)
        row = [math.nan] * len(self.names)
        column = self.column
        for key in keys:
            index = column.get(key)
            if index is None:
                # The caller's key goes into the status message: never unbounded.
                raise InvalidInputError(
                    "unknown feature", field=f"{prefix}features.{truncated(key)}"
                )
            row[index] = features[key]
        if len(keys) != len(self.names):
            present = set(keys)
            missing = next(name for name in self.names if name not in present)
            raise InvalidInputError("missing", field=f"{prefix}features.{missing}")
        return row

    def check_finite(self, matrix: Matrix, request_index: Sequence[int] | None = None) -> None:
        """Reject inf anywhere and NaN in a column the model does not allow missing.

        ``request_index[r]`` is the batch position of matrix row ``r`` (for the field name).
        """
        finite = np.isfinite(matrix)
        if finite.all():
            return
        bad = ~finite & ~(np.isnan(matrix) & self.nan_ok)
        if not bad.any():
            return
        row, col = (int(i) for i in np.argwhere(bad)[0])
        prefix = f"requests[{request_index[row]}]." if request_index is not None else ""
        name = self.names[col]
        if np.isnan(matrix[row, col]):
            raise InvalidInputError(
                "NaN (missing value) not allowed for this feature", field=f"{prefix}features.{name}"
            )
        raise InvalidInputError("must be a finite number", field=f"{prefix}features.{name}")


def packed_rows(values: Sequence[Sequence[float]], width: int, map_sizes: Sequence[int]) -> Matrix:
    """A packed batch's rows as a float32 ``(len(values), width)`` matrix, in batch order.

    ``map_sizes[i]`` is the size of request ``i``'s ``features`` map, which must be empty.
    The first invalid row, in request order, is InvalidInputError naming
    ``requests[i].features`` (both forms) or ``requests[i].feature_values`` (its length).
    Finiteness is not checked here. The values are read in one C loop as float64 and then
    rounded to float32 once: the same float32 values as the map path gives.
    """
    n = len(values)
    if any(map_sizes) or set(map(len, values)) - {width}:
        for i, (row, size) in enumerate(zip(values, map_sizes, strict=True)):
            if size:
                raise InvalidInputError(
                    "set in a batch with feature_names: send feature_values only",
                    field=f"requests[{i}].features",
                )
            if len(row) != width:
                raise InvalidInputError(
                    f"has {len(row)} values, feature_names has {width}",
                    field=f"requests[{i}].feature_values",
                )
    flat = np.fromiter(chain.from_iterable(values), dtype=np.float64, count=n * width)
    return flat.astype(np.float32).reshape(n, width)
