"""The scores ``Nearest`` derives from its neighbours (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hindsight.common.errors import InvalidInputError

__all__ = ["percentile", "sim_conf"]


def sim_conf(qualities: Sequence[float], similarities: Sequence[float]) -> float | None:
    """mean(quality) × mean(cosine similarity) of the top-k; None when there are none."""
    if len(qualities) != len(similarities):
        raise ValueError("one quality per similarity")
    if not qualities:
        return None
    return math.fsum(qualities) / len(qualities) * (math.fsum(similarities) / len(similarities))


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-quantile (0 ≤ p ≤ 1) with linear interpolation between order statistics
    (numpy's default); None for no values."""
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise InvalidInputError("p must lie within [0, 1]", field="p")
    if not values:
        return None
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
