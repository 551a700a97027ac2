"""The rule set: breakouts and pullbacks, with stop and target from the ATR.

Evaluated at the close of bar ``t`` on indicators of bars ``0..t`` only:

* **breakout**: the close is above the highest high of the previous 20 bars (buy) or
  below their lowest low (sell), while volatility is normal: ATR(14) / ATR(100) between
  0.8 and 2.5 (no dead market, no shock). Stop 1.5 ATR, target 3 ATR (R:R 2).
* **pullback**: a trend by the EMA(50) slope (more than 0.2 ATR over 5 bars, close on the
  trend's side of the EMA(50)) and a retrace to the EMA(20): the bar's low (high for a
  sell) reaches the EMA(20) and the close is back on the trend's side. Stop 1.2 ATR,
  target 2 ATR (R:R 1.67).

When both fire on one bar the breakout wins. One open trade per symbol, setup and side.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import pandas as pd  # type: ignore[import-untyped]

__all__ = ["ALL_KINDS", "RULE_VERSION", "SETUPS", "Setup", "detect_setup"]

RULE_VERSION = "replay-rules/1"
SETUPS: tuple[str, ...] = ("breakout", "pullback")
ALL_KINDS: tuple[tuple[str, str], ...] = tuple(
    (s, side) for s in SETUPS for side in ("buy", "sell")
)

BREAKOUT_STOP_ATR, BREAKOUT_TARGET_ATR = 1.5, 3.0
PULLBACK_STOP_ATR, PULLBACK_TARGET_ATR = 1.2, 2.0
VOL_RATIO_MIN, VOL_RATIO_MAX = 0.8, 2.5
TREND_SLOPE_MIN = 0.2


@dataclass(frozen=True, slots=True)
class Setup:
    """A rule that fired at a bar's close."""

    setup: Literal["breakout", "pullback"]
    side: Literal["buy", "sell"]
    entry: float
    sl: float
    tp: float


def _levels(
    setup: Literal["breakout", "pullback"],
    side: Literal["buy", "sell"],
    entry: float,
    atr: float,
) -> Setup:
    stop, target = (
        (BREAKOUT_STOP_ATR, BREAKOUT_TARGET_ATR)
        if setup == "breakout"
        else (PULLBACK_STOP_ATR, PULLBACK_TARGET_ATR)
    )
    sign = 1.0 if side == "buy" else -1.0
    return Setup(
        setup=setup,
        side=side,
        entry=entry,
        sl=round(entry - sign * stop * atr, 8),
        tp=round(entry + sign * target * atr, 8),
    )


def detect_setup(
    bar: pd.Series, ind: pd.Series, *, allowed: Collection[tuple[str, str]] = ALL_KINDS
) -> Setup | None:
    """The first ``allowed`` (setup, side) firing at this bar (OHLC ``bar``, indicators ``ind``)."""
    atr = float(ind["atr"])
    if not math.isfinite(atr) or atr <= 0:
        return None
    close, high, low = float(bar["Close"]), float(bar["High"]), float(bar["Low"])
    vol_ratio = float(ind["atr_ratio_14_100"])
    if VOL_RATIO_MIN <= vol_ratio <= VOL_RATIO_MAX:
        if ("breakout", "buy") in allowed and close > float(ind["high20"]):
            return _levels("breakout", "buy", close, atr)
        if ("breakout", "sell") in allowed and close < float(ind["low20"]):
            return _levels("breakout", "sell", close, atr)
    slope, ema20, ema50 = float(ind["ema_slope_50"]), float(ind["ema20"]), float(ind["ema50"])
    trend_up = slope > TREND_SLOPE_MIN and close > ema50
    if ("pullback", "buy") in allowed and trend_up and low <= ema20 < close:
        return _levels("pullback", "buy", close, atr)
    trend_down = slope < -TREND_SLOPE_MIN and close < ema50
    if ("pullback", "sell") in allowed and trend_down and high >= ema20 > close:
        return _levels("pullback", "sell", close, atr)
    return None
