"""Feature validation: a request's ``features`` map against the model's feature list.

Fills float32 rows in the ONNX input's column order. Errors name the field the way the
Scoring contract says: ``features.<name>`` (prefixed ``requests[i].`` in a batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hindsight.common.errors import InvalidInputError

__all__ = ["FeatureIndex"]

Matrix = npt.NDArray[np.float32]


@dataclass(slots=True)
class FeatureIndex:
    """A model's feature list: name → column, which may be NaN, and a fast path cache.

    The cache remembers the last key order seen in a request map with exactly the model's
    names; a request with the same key order is known to hold exactly those names.
    """

    names: tuple[str, ...]
    nan_allowed: frozenset[str]
    column: dict[str, int] = field(init=False)
    nan_ok: npt.NDArray[np.bool_] = field(init=False)
    _order_keys: list[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise ValueError("duplicate feature names")
        self.column = {name: i for i, name in enumerate(self.names)}
        self.nan_ok = np.array([n in self.nan_allowed for n in self.names], dtype=np.bool_)

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
        :meth:`check_finite`. Only keys known to be present are read: a protobuf map
        inserts a default value when a missing key is read.
        """
        keys = list(features)
        if keys == self._order_keys:
            return [features[name] for name in self.names]
        row = [math.nan] * len(self.names)
        column = self.column
        for key in keys:
            index = column.get(key)
            if index is None:
                raise InvalidInputError("unknown feature", field=f"{prefix}features.{key}")
            row[index] = features[key]
        if len(keys) != len(self.names):
            present = set(keys)
            missing = next(name for name in self.names if name not in present)
            raise InvalidInputError("missing", field=f"{prefix}features.{missing}")
        # Every name present exactly once: the next request with this key order takes
        # the fast path above (one list comparison instead of a lookup per key).
        self._order_keys = keys
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
