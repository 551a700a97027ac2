"""The derived series of a run of bars (ATR14, EMA21, RSI14, realised volatility 20)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hindsight.market.domain.bars import Bar
from hindsight.market.domain.indicators import INDICATOR_VERSION, atr, ema, realised_vol, rsi
from hindsight.market.storage import Derived

__all__ = ["CONTEXT_BARS", "DerivedColumns", "derive", "derive_columns"]

CONTEXT_BARS = 256
"""Stored bars read before the first new bar when its derived series are computed. The
recursive series (Wilder ATR and RSI, EMA) forget older bars geometrically: after 256 bars
a bar's weight is below (13/14)^256 ≈ 6e-9 of the newest one's, so values do not depend on
how the history arrived (one import, or one bar at a time) beyond that."""


@dataclass(frozen=True, slots=True)
class DerivedColumns:
    """The derived series of a run of bars, one list per column (None: warm-up), as
    :class:`Derived` would hold them bar by bar."""

    atr14: list[float | None]
    ema21: list[float | None]
    rsi14: list[float | None]
    realised_vol20: list[float | None]

    def __len__(self) -> int:
        return len(self.atr14)

    def last(self, n: int) -> DerivedColumns:
        """The columns of the last ``n`` bars."""
        start = len(self) - n
        return DerivedColumns(
            self.atr14[start:], self.ema21[start:], self.rsi14[start:], self.realised_vol20[start:]
        )


def _clean(column: NDArray[np.float64]) -> list[float | None]:
    # tolist() gives the same Python floats as float(column[i]) (Derived.clean's input).
    return [None if math.isnan(v) else v for v in column.tolist()]


def derive_columns(
    high: NDArray[np.float64], low: NDArray[np.float64], close: NDArray[np.float64]
) -> DerivedColumns:
    """The derived series of every bar of one series (oldest first), column by column:
    the values :func:`derive` gives, without a Python object per bar."""
    return DerivedColumns(
        atr14=_clean(atr(high, low, close, 14)),
        ema21=_clean(ema(close, 21)),
        rsi14=_clean(rsi(close, 14)),
        realised_vol20=_clean(realised_vol(close, 20)),
    )


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
