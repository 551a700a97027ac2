"""Search filters: a Chroma-style ``where`` checked before Chroma sees it.

Chroma's own messages are terse and its checks differ between versions, so every filter
is validated (and normalised) here first; an invalid one is an ``InvalidInputError`` on
the field ``filter`` whose message points at the offending part.
"""

from __future__ import annotations

from typing import Any

from hindsight.common.errors import InvalidInputError

__all__ = ["COMPARISON_OPERATORS", "LIST_OPERATORS", "combine", "validate_filter"]

Where = dict[str, Any]  # a Chroma where: free-form JSON (any metadata key, nested operators)

COMPARISON_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
LIST_OPERATORS = frozenset({"$in", "$nin"})
_ORDER_OPERATORS = frozenset({"$gt", "$gte", "$lt", "$lte"})
_LOGICAL = frozenset({"$and", "$or"})
_MAX_DEPTH = 8


def _fail(path: str, message: str) -> InvalidInputError:
    return InvalidInputError(f"{path}: {message}", field="filter")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not (
        isinstance(value, float) and value != value  # NaN
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _condition(path: str, field: str, value: Any) -> list[Where]:
    """One field's condition → one or more single-operator Chroma clauses."""
    if not field or field.startswith("$"):
        raise _fail(path, f"unknown operator {field!r} (logical operators are $and, $or)")
    if _is_scalar(value):
        return [{field: {"$eq": value}}]
    if not isinstance(value, dict) or not value:
        raise _fail(
            f"{path}.{field}",
            'expected a string, number, boolean or an operator object such as {"$gte": 1}',
        )
    clauses: list[Where] = []
    for op, operand in value.items():
        where = f"{path}.{field}.{op}"
        if op in COMPARISON_OPERATORS:
            if not _is_scalar(operand):
                raise _fail(where, "expected a string, number or boolean")
            if op in _ORDER_OPERATORS and not _is_number(operand):
                raise _fail(where, f"{op} compares numbers only")
        elif op in LIST_OPERATORS:
            if not isinstance(operand, list) or not operand:
                raise _fail(where, "expected a non-empty list")
            if not all(_is_scalar(item) for item in operand):
                raise _fail(where, "list items must be strings, numbers or booleans")
            # Chroma refuses mixed lists, ints and floats included ([1, 2.5]).
            if len({type(item) for item in operand}) > 1:
                raise _fail(where, "list items must all have the same type (ints and floats too)")
        else:
            allowed = ", ".join(sorted(COMPARISON_OPERATORS | LIST_OPERATORS))
            raise _fail(where, f"unknown operator {op!r} (allowed: {allowed})")
        clauses.append({field: {op: operand}})
    return clauses


def _node(value: Any, path: str, depth: int) -> Where:
    if depth > _MAX_DEPTH:
        raise _fail(path, f"nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(value, dict):
        raise _fail(path, "expected an object")
    if not value:
        raise _fail(path, "empty object")
    clauses: list[Where] = []
    for key, item in value.items():
        if not isinstance(key, str):  # pragma: no cover - JSON keys are strings
            raise _fail(path, "keys must be strings")
        if key in _LOGICAL:
            if not isinstance(item, list) or not item:
                raise _fail(f"{path}.{key}", "expected a non-empty list of filters")
            parts = [_node(sub, f"{path}.{key}[{i}]", depth + 1) for i, sub in enumerate(item)]
            clauses.append(parts[0] if len(parts) == 1 else {key: parts})
        else:
            clauses.extend(_condition(path, key, item))
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def validate_filter(value: Any) -> Where | None:
    """A Chroma ``where`` from the request's ``filter`` (None or ``{}``: no filter).

    Accepts ``{"symbol": "EURUSD"}`` shorthand, several fields in one object (ANDed),
    ``$and`` / ``$or`` lists, and ``$eq $ne $gt $gte $lt $lte $in $nin``; returns the
    explicit form Chroma wants (one operator per clause, ``$and`` of at least two).
    """
    if value is None or value == {}:
        return None
    return _node(value, "filter", 0)


def combine(*wheres: Where | None) -> Where | None:
    """AND the given clauses together, skipping the missing ones."""
    present = [w for w in wheres if w]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return {"$and": present}
