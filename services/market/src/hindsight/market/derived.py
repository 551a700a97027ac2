"""The derived series of a run of bars (ATR14, EMA21, RSI14, realised volatility 20)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hindsight.market.domain.bars import Bar
from hindsight.market.domain.indicators import INDICATOR_VERSION, atr, ema, realised_vol, rsi
from hindsight.market.storage import Derived

__all__ = ["CONTEXT_BARS", "derive"]

CONTEXT_BARS = 256
"""Stored bars read before the first new bar when its derived series are computed. The
recursive series (Wilder ATR and RSI, EMA) forget older bars geometrically: after 256 bars
a bar's weight is below (13/14)^256 ≈ 6e-9 of the newest one's, so values do not depend on
how the history arrived (one import, or one bar at a time) beyond that."""


def derive(bars: Sequence[Bar]) -> list[Derived]:
    """The derived series of every bar of ``bars`` (one series, oldest first)."""
    if not bars:
        return []
    high = np.array([b.high for b in bars], dtype=np.float64)
    low = np.array([b.low for b in bars], dtype=np.float64)
    close = np.array([b.close for b in bars], dtype=np.float64)
    columns = (atr(high, low, close, 14), ema(close, 21), rsi(close, 14), realised_vol(close, 20))
    return [
        Derived(
            atr14=Derived.clean(float(columns[0][i])),
            ema21=Derived.clean(float(columns[1][i])),
            rsi14=Derived.clean(float(columns[2][i])),
            realised_vol20=Derived.clean(float(columns[3][i])),
            indicator_version=INDICATOR_VERSION,
        )
        for i in range(len(bars))
    ]
