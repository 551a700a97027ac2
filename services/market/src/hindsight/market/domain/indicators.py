"""Derived series kept with the bars: ATR, EMA, RSI and realised volatility.

Each function takes numpy float64 arrays (one value per bar, oldest first) and returns an
array of the same length whose value at index ``i`` reads only indices ``<= i`` (no value
ever sees a later bar), NaN during the warm-up. A NaN in the input propagates to every later
value of a recursive series (ATR, EMA, RSI) and to the windows holding it (realised vol).
``INDICATOR_VERSION`` names these definitions; stored series carry it and a change of any
definition below bumps it.

- ``atr(high, low, close, period=14)``: Wilder's average true range. The true range of bar
  0 is ``high - low`` (no previous close); of bar ``i > 0`` it is
  ``max(high - low, |high - close[i-1]|, |low - close[i-1]|)``. The first ATR, at index
  ``period - 1``, is the mean of the first ``period`` true ranges; then
  ``atr[i] = (atr[i-1] * (period - 1) + tr[i]) / period``.
- ``ema(close, period=21)``: ``alpha = 2 / (period + 1)``, seeded at index ``period - 1``
  with the mean of the first ``period`` closes; then
  ``ema[i] = ema[i-1] + alpha * (close[i] - ema[i-1])``.
- ``rsi(close, period=14)``: Wilder's RSI. Changes ``d[i] = close[i] - close[i-1]``; the
  first average gain and loss, at index ``period``, are the means of the first ``period``
  gains ``max(d, 0)`` and losses ``max(-d, 0)``; then Wilder smoothing as for ATR.
  ``rsi = 100 - 100 / (1 + gain / loss)``: 100 when the average loss is 0, 50 when both
  averages are 0 (a flat series).
- ``realised_vol(close, window=20)``: the sample standard deviation (ddof 1) of the last
  ``window`` log returns ``ln(close[i] / close[i-1])``, first at index ``window``; per bar,
  not annualised. A non-positive close gives NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["INDICATOR_VERSION", "atr", "ema", "realised_vol", "rsi"]

INDICATOR_VERSION = "1"

Series = NDArray[np.float64]


def atr(high: Series, low: Series, close: Series, period: int = 14) -> Series:
    """Wilder's average true range (see the module)."""
    _check_period(period, "period")
    h, lo, c = _as_series(high, "high"), _as_series(low, "low"), _as_series(close, "close")
    if not len(h) == len(lo) == len(c):
        raise ValueError(
            f"high, low and close must have the same length, got {len(h)}, {len(lo)}, {len(c)}"
        )
    tr = h - lo
    if len(tr) > 1:
        previous = c[:-1]
        # np.fmax would skip a NaN; np.maximum propagates it, as the module says.
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - previous), np.abs(lo[1:] - previous)))
    return _wilder(tr.tolist(), period, first=period - 1)


def ema(close: Series, period: int = 21) -> Series:
    """Exponential moving average seeded with a simple mean (see the module)."""
    _check_period(period, "period")
    values = _as_series(close, "close").tolist()
    out = [math.nan] * len(values)
    if len(values) >= period:
        alpha = 2.0 / (period + 1)
        value = math.fsum(values[:period]) / period
        out[period - 1] = value
        for i in range(period, len(values)):
            value += alpha * (values[i] - value)
            out[i] = value
    return np.array(out, dtype=np.float64)


def rsi(close: Series, period: int = 14) -> Series:
    """Wilder's relative strength index, 0–100 (see the module)."""
    _check_period(period, "period")
    values = _as_series(close, "close").tolist()
    # Index 0 has no change; a placeholder keeps indices aligned with the bars.
    changes = [0.0] + [values[i] - values[i - 1] for i in range(1, len(values))]
    gains = _wilder([max(d, 0.0) for d in changes], period, first=period, skip_first=True)
    losses = _wilder([max(-d, 0.0) for d in changes], period, first=period, skip_first=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 100.0 - 100.0 / (1.0 + gains / losses)
    out[(losses == 0) & (gains > 0)] = 100.0
    out[(losses == 0) & (gains == 0)] = 50.0
    return out


def realised_vol(close: Series, window: int = 20) -> Series:
    """Rolling sample standard deviation of log returns (see the module)."""
    _check_period(window, "window")
    if window < 2:
        raise ValueError(f"window must be >= 2 (a sample standard deviation), got {window}")
    c = _as_series(close, "close")
    out = np.full(len(c), np.nan, dtype=np.float64)
    if len(c) <= window:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(c > 0, np.log(np.where(c > 0, c, 1.0)), np.nan)
    returns = np.diff(logs)
    windows = np.lib.stride_tricks.sliding_window_view(returns, window)
    # Each window is reduced on its own (no running sums), so a value depends only on its
    # own returns, bit for bit, whatever came before or after.
    out[window:] = windows.std(axis=1, ddof=1)
    return out


def _wilder(values: list[float], period: int, *, first: int, skip_first: bool = False) -> Series:
    """Wilder smoothing: the mean of ``period`` values ending at ``first``, then
    ``s = (s * (period - 1) + v) / period``."""
    out = [math.nan] * len(values)
    if len(values) > first:
        start = 1 if skip_first else 0
        value = math.fsum(values[start : first + 1]) / period
        out[first] = value
        for i in range(first + 1, len(values)):
            value = (value * (period - 1) + values[i]) / period
            out[i] = value
    return np.array(out, dtype=np.float64)


def _as_series(values: Series, name: str) -> Series:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _check_period(period: int, name: str) -> None:
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {period!r}")
