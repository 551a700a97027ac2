"""Make metric dictionaries JSON-safe: NaN and infinities become null."""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import numpy as np

__all__ = ["JsonObject", "jsonable"]

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object without a schema of its own: a model card's free-form metrics (and their
parts: calibration, parity, reference distributions, trading figures), a run's report.
Used only for values that are that; anything with a fixed shape gets a type."""


def jsonable(value: Any) -> Any:
    """A copy of ``value`` with numpy scalars unwrapped and non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
