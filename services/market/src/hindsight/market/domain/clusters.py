"""Liquidity clusters: each symbol is "H", "M" or "L" by terciles of its dollar volume.

The trainer and the scorer pick a symbol's Entry-Expert (``entry_H``, ``entry_M``,
``entry_L``) by this cluster. The rule (``CLUSTER_RULE_VERSION`` names it):

- Dollar volume of a symbol: the mean of ``close * volume`` over its last
  ``DOLLAR_VOLUME_WINDOW`` (30) daily bars, fewer when it has fewer
  (``rolling_dollar_volume``). Comparable across asset classes only as far as the volumes
  are: FX bars usually carry tick volume, which ranks them by activity, not by money.
- Ranking: symbols sorted by dollar volume, largest first. A symbol of rank ``r`` (0-based)
  among ``n`` is "H" when ``3r < n``, "M" when ``3r < 2n``, otherwise "L"; so the sizes are
  as equal as possible and any remainder goes to the higher clusters (4 symbols: H H M L;
  5: H H M M L).
- Ties: symbols with equal dollar volume share a cluster, the one of the best rank among
  them (the higher cluster), so a tie never splits on the symbols' names.
- Fewer than 3 symbols: terciles cannot be formed and ranking one symbol against one other
  says little, so every symbol is "M" (the middle expert).
- A negative, NaN or infinite dollar volume is an error naming the symbol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CLUSTER_RULE_VERSION",
    "CLUSTERS",
    "DOLLAR_VOLUME_WINDOW",
    "liquidity_clusters",
    "rolling_dollar_volume",
]

CLUSTER_RULE_VERSION = "1"
CLUSTERS: tuple[str, ...] = ("H", "M", "L")
DOLLAR_VOLUME_WINDOW = 30


def rolling_dollar_volume(
    close: NDArray[np.float64], volume: NDArray[np.float64], *, window: int = DOLLAR_VOLUME_WINDOW
) -> float:
    """Mean ``close * volume`` over the last ``window`` daily bars (all when fewer)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = np.asarray(close, dtype=np.float64)[-window:]
    v = np.asarray(volume, dtype=np.float64)[-window:]
    if len(c) != len(v):
        raise ValueError(f"close and volume must have the same length, got {len(c)}, {len(v)}")
    if len(c) == 0:
        raise ValueError("close: no bars, dollar volume is undefined")
    return float(np.mean(c * v))


def liquidity_clusters(dollar_volume: Mapping[str, float]) -> dict[str, str]:
    """Symbol → "H" / "M" / "L" by terciles of dollar volume (the rule in the module)."""
    for symbol, value in dollar_volume.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"dollar_volume[{symbol!r}] must be finite and >= 0, got {value!r}")
    n = len(dollar_volume)
    if n < 3:
        return dict.fromkeys(dollar_volume, "M")
    ranked = sorted(dollar_volume.items(), key=lambda item: (-item[1], item[0]))
    clusters: dict[str, str] = {}
    rank = 0
    for position, (symbol, value) in enumerate(ranked):
        if position == 0 or value != ranked[position - 1][1]:
            rank = position
        clusters[symbol] = "H" if 3 * rank < n else "M" if 3 * rank < 2 * n else "L"
    return clusters
