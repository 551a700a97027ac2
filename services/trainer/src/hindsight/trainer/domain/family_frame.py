"""A family's training frame: typed columns, sorted by signal time.

:meth:`FamilyFrame.from_columns` takes any column source: a ``dict`` of column name →
sequence (or numpy array), or a pandas ``DataFrame`` (anything with ``__iter__`` over
column names and ``__getitem__`` by name); the trainer itself does not need pandas.

Columns (one row per signal):

=====================  =========================================================
``ts``                 signal time: aware datetimes, ``datetime64``, or int epoch µs
``closed_at``          when the label was known (horizon end), same types; it
                       drives the embargo/purge of :mod:`.splits`
``symbol``             str
``timeframe``          str (optional, kept for reports)
``side``               ``buy`` / ``sell`` (optional, kept for reports)
``liquidity_cluster``  ``H`` / ``M`` / ``L`` or None / NaN (unknown)
``y_entry``            0 / 1 (the entry head's target)
``sl_katr``            the risk head's target (NaN: row not used by that head)
``rr_target``          the RR head's target (NaN: not used)
``offset_katr``        the offset head's target (NaN: not used)
``realised_r``         optional: R of the canonical entry (entry metrics)
``signal_id``          optional: ties on ``ts`` are ordered by it
feature columns        numbers (NaN allowed); by default every column that is not
                       reserved (:data:`RESERVED_COLUMNS`: the ones above and every
                       field of ``signal.features`` / ``signal.labeled`` /
                       ``signal.outcome``, so a label never becomes a feature)
=====================  =========================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import SignalFeatures, SignalLabeled, SignalOutcome
from hindsight.common.family import CLUSTER_CODES, CLUSTERS, HEAD_TARGETS

__all__ = ["RESERVED_COLUMNS", "ColumnSource", "FamilyFrame"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ObjArray = npt.NDArray[np.object_]

RESERVED_COLUMNS: frozenset[str] = frozenset(
    {
        "closed_at",
        *HEAD_TARGETS.values(),
        # Every field of the events a frame is joined from: labels and outcomes are known
        # only after the signal, so none may ever become a feature by default.
        *SignalFeatures.model_fields,
        *SignalLabeled.model_fields,
        *SignalOutcome.model_fields,
    }
)
"""Columns that are never features (the frame's own, and every signal/label/outcome field)."""


class ColumnSource(Protocol):
    """A dict of columns or a pandas DataFrame: column names by iteration, columns by name."""

    def __iter__(self) -> Iterator[Any]: ...

    def __getitem__(self, key: str) -> Any: ...


def _micros(values: Any, field: str) -> IntArray:
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[us]").astype(np.int64)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    out = np.empty(len(arr), dtype=np.int64)
    for i, v in enumerate(arr.tolist()):
        if not isinstance(v, datetime) or v.tzinfo is None:
            raise InvalidInputError(f"row {i}: expected an aware datetime, got {v!r}", field=field)
        out[i] = round(v.timestamp() * 1_000_000)
    return out


def _floats(values: Any, field: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"must hold numbers: {exc}", field=field) from exc
    if arr.ndim != 1:
        raise InvalidInputError("must be one column", field=field)
    return arr


def _clusters(values: Any) -> ObjArray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(list(values)):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out[i] = None
        elif v in CLUSTERS:
            out[i] = str(v)
        else:
            raise InvalidInputError(
                f"row {i}: {v!r} is not H, M, L or empty", field="liquidity_cluster"
            )
    return out


@dataclass(frozen=True, slots=True)
class FamilyFrame:
    """The frame as arrays, rows sorted by (``ts``, ``signal_id``)."""

    ts: IntArray
    closed: IntArray
    symbol: ObjArray
    cluster: ObjArray
    x: FloatArray
    """Features [n, f], float32-exact (what ONNX sees)."""
    feature_names: list[str]
    targets: dict[str, FloatArray]
    realised_r: FloatArray | None = None

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def cluster_codes(self) -> FloatArray:
        """``CLUSTER_FEATURE`` per row: H = 2, M = 1, L = 0, NaN = unknown."""
        return np.array([CLUSTER_CODES.get(c, np.nan) if c else np.nan for c in self.cluster])

    @property
    def day_groups(self) -> ObjArray:
        """``symbol|YYYY-MM-DD`` (UTC day of ``ts``) per row: Precision@k's groups."""
        days = self.ts.astype("datetime64[us]").astype("datetime64[D]").astype(str)
        return np.array([f"{s}|{d}" for s, d in zip(self.symbol, days, strict=True)], dtype=object)

    @classmethod
    def from_columns(
        cls, columns: ColumnSource, *, features: Sequence[str] | None = None
    ) -> FamilyFrame:
        """Validate and sort a column source (see the module docstring for the columns)."""
        names = [str(c) for c in columns]
        required = ["ts", "closed_at", "symbol", "liquidity_cluster", *HEAD_TARGETS.values()]
        for column in required:
            if column not in names:
                raise InvalidInputError("missing column", field=column)
        chosen = (
            list(features)
            if features is not None
            else [c for c in names if c not in RESERVED_COLUMNS]
        )
        if not chosen:
            raise InvalidInputError("no feature columns", field="features")
        for column in chosen:
            if column not in names:
                raise InvalidInputError("missing feature column", field=column)
            if column in RESERVED_COLUMNS:
                raise InvalidInputError("a reserved column cannot be a feature", field=column)
        ts = _micros(columns["ts"], "ts")
        closed = _micros(columns["closed_at"], "closed_at")
        ids = (
            np.asarray([str(v) for v in columns["signal_id"]], dtype=object)
            if "signal_id" in names
            else np.full(len(ts), "", dtype=object)
        )
        order = np.lexsort((ids.astype(str), ts))
        x = np.column_stack([_floats(columns[c], c) for c in chosen])
        targets = {t: _floats(columns[t], t)[order] for t in HEAD_TARGETS.values()}
        y = targets[HEAD_TARGETS["entry"]]
        if not np.all(np.isin(y, (0.0, 1.0))):
            raise InvalidInputError("must be 0 or 1", field=HEAD_TARGETS["entry"])
        realised = (
            _floats(columns["realised_r"], "realised_r")[order] if "realised_r" in names else None
        )
        return cls(
            ts=ts[order],
            closed=closed[order],
            symbol=np.asarray([str(s) for s in columns["symbol"]], dtype=object)[order],
            cluster=_clusters(columns["liquidity_cluster"])[order],
            x=x[order].astype(np.float32).astype(np.float64),
            feature_names=chosen,
            targets=targets,
            realised_r=realised,
        )
