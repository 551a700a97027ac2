"""Evaluate a Chroma ``where`` on one record's metadata, exactly as Chroma 1.x does.

Used to filter over-fetched nearest neighbours in Python instead of asking Chroma for a
filtered query (which is much slower on a large collection). The rules below were
measured against Chroma itself (the unit tests compare with ``collection.get(where=…)``):

- strings match strings only, booleans booleans only (``True`` is not ``1``); a type
  mismatch never satisfies ``$eq``, ``$in`` or an order operator;
- ints and floats compare as numbers, except that Chroma casts a float operand to an
  integer (truncated toward zero, saturated to 64 bits) when the stored value is an int:
  ``{"$lt": 1.5}`` does not match a stored ``1``;
- ``$ne`` and ``$nin`` are the complements of ``$eq`` and ``$in``: they also match a
  record whose key is missing or holds another type;
- a missing key matches nothing else; several conditions in one object are ANDed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Predicate", "matches", "where_predicate"]

Metadata = Mapping[str, Any]
Predicate = Callable[[Metadata | None], bool]

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_MISSING = object()


def _as_i64(value: float) -> int:
    """A float as Rust's ``f64 as i64`` casts it (what Chroma compares int columns with)."""
    if math.isnan(value):
        return 0
    if value >= 2.0**63:
        return _I64_MAX
    if value <= -(2.0**63):
        return _I64_MIN
    return int(value)  # int() truncates toward zero, like the cast


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(stored: Any, operand: Any) -> tuple[int | float, int | float] | None:
    """Both sides as Chroma compares them, or None when either is not a number."""
    if not (_is_number(stored) and _is_number(operand)):
        return None
    if isinstance(stored, int) and isinstance(operand, float):
        return stored, _as_i64(operand)
    if isinstance(stored, float) and isinstance(operand, int):
        return stored, float(operand)
    return stored, operand


def _equal(stored: Any, operand: Any) -> bool:
    if isinstance(stored, bool) or isinstance(operand, bool):
        return isinstance(stored, bool) and isinstance(operand, bool) and stored == operand
    if isinstance(stored, str) or isinstance(operand, str):
        return isinstance(stored, str) and isinstance(operand, str) and stored == operand
    pair = _numbers(stored, operand)
    return pair is not None and pair[0] == pair[1]


_ORDER: dict[str, Callable[[int | float, int | float], bool]] = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _operator(field: str, op: str, operand: Any) -> Predicate:
    """One ``{field: {op: operand}}`` clause."""
    if op in ("$eq", "$ne"):
        negate = op == "$ne"

        def eq(meta: Metadata | None) -> bool:
            stored = _MISSING if meta is None else meta.get(field, _MISSING)
            hit = stored is not _MISSING and _equal(stored, operand)
            return hit != negate

        return eq
    if op in ("$in", "$nin"):
        if not isinstance(operand, list | tuple):
            raise ValueError(f"{field}.{op}: expected a list")
        items = list(operand)
        negate = op == "$nin"

        def member(meta: Metadata | None) -> bool:
            stored = _MISSING if meta is None else meta.get(field, _MISSING)
            hit = stored is not _MISSING and any(_equal(stored, item) for item in items)
            return hit != negate

        return member
    compare = _ORDER.get(op)
    if compare is None:
        raise ValueError(f"{field}: unknown operator {op!r}")
    if not _is_number(operand):
        raise ValueError(f"{field}.{op}: compares numbers only")

    def order(meta: Metadata | None) -> bool:
        stored = None if meta is None else meta.get(field)
        pair = _numbers(stored, operand)
        return pair is not None and compare(pair[0], pair[1])

    return order


def _all(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda meta: all(part(meta) for part in parts)


def _any(parts: list[Predicate]) -> Predicate:
    if len(parts) == 1:
        return parts[0]
    return lambda meta: any(part(meta) for part in parts)


def where_predicate(where: Mapping[str, Any] | None) -> Predicate:
    """Compile a ``where`` (as ``validate_filter`` returns it, shorthand also accepted).

    None matches every record. Raises ValueError on an operator Chroma would not know.
    """
    if where is None:
        return lambda meta: True
    if not isinstance(where, Mapping) or not where:
        raise ValueError("a where must be a non-empty object")
    parts: list[Predicate] = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"{key}: expected a non-empty list")
            subs = [where_predicate(sub) for sub in value]
            parts.append(_all(subs) if key == "$and" else _any(subs))
        elif key.startswith("$"):
            raise ValueError(f"unknown logical operator {key!r}")
        elif isinstance(value, Mapping):
            if not value:
                raise ValueError(f"{key}: empty condition")
            parts.append(_all([_operator(key, op, operand) for op, operand in value.items()]))
        else:
            parts.append(_operator(key, "$eq", value))
    return _all(parts)


def matches(where: Mapping[str, Any] | None, metadata: Metadata | None) -> bool:
    """Whether one record's metadata satisfies ``where`` (compiles it each call)."""
    return where_predicate(where)(metadata)
