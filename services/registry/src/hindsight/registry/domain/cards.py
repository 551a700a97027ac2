"""Reading numbers out of a free-form ``metrics.json``: several layouts, the first found wins."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MISSING", "dig", "first_number", "first_text", "number"]

MISSING: Any = object()
"""What :func:`dig` returns for a path that is not there (None may be a value)."""


def dig(source: Any, *path: str) -> Any:
    """``source[path[0]][path[1]]...``, or :data:`MISSING`."""
    node = source
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return MISSING
        node = node[key]
    return node


def number(value: Any) -> float | None:
    """A finite number; a metric may be a bare number or an object with a point estimate."""
    if isinstance(value, Mapping):
        for key in ("value", "point", "estimate", "mean"):
            if key in value:
                return number(value[key])
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def first_number(card: Any, paths: Sequence[tuple[str, ...]]) -> float | None:
    """The first path that holds a finite number."""
    for path in paths:
        found = number(dig(card, *path))
        if found is not None:
            return found
    return None


def first_text(card: Any, paths: Sequence[tuple[str, ...]]) -> str | None:
    """The first path that holds a non-empty string."""
    for path in paths:
        found = dig(card, *path)
        if isinstance(found, str) and found:
            return found
    return None
