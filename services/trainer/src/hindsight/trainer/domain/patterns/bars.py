"""OHLCV bars as typed arrays, validated once, and the window the images and rules read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["WINDOW", "Bars", "FloatArray", "atr", "ema", "rsi", "true_range"]

WINDOW = 64
"""Bars per window: one image column per bar."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Bars:
    """Time-ordered OHLCV arrays of equal length (float64, finite, positive prices)."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    @classmethod
    def from_arrays(
        cls,
        *,
        open: npt.ArrayLike,  # noqa: A002 - the OHLCV field name
        high: npt.ArrayLike,
        low: npt.ArrayLike,
        close: npt.ArrayLike,
        volume: npt.ArrayLike | None = None,
    ) -> Bars:
        """Validated bars; a bad field raises ``ValueError`` naming it."""
        fields = {"open": open, "high": high, "low": low, "close": close}
        arrays = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in fields.items()}
        n = len(arrays["close"])
        vol = np.zeros(n) if volume is None else np.asarray(volume, dtype=np.float64).reshape(-1)
        arrays["volume"] = vol
        for name, arr in arrays.items():
            if len(arr) != n:
                raise ValueError(f"{name}: length {len(arr)} differs from close's {n}")
            if not bool(np.all(np.isfinite(arr))):
                raise ValueError(f"{name}: must be finite")
        for name in ("open", "high", "low", "close"):
            if bool(np.any(arrays[name] <= 0)):
                raise ValueError(f"{name}: prices must be positive")
        if bool(np.any(vol < 0)):
            raise ValueError("volume: must not be negative")
        hi, lo = arrays["high"], arrays["low"]
        body_hi = np.maximum(arrays["open"], arrays["close"])
        body_lo = np.minimum(arrays["open"], arrays["close"])
        if bool(np.any(hi < body_hi)):
            raise ValueError("high: below open or close")
        if bool(np.any(lo > body_lo)):
            raise ValueError("low: above open or close")
        return cls(**arrays)

    def __len__(self) -> int:
        return len(self.close)

    def window(self, end: int, size: int = WINDOW) -> Bars:
        """The ``size`` bars ending at index ``end`` (inclusive): nothing after ``end``."""
        if not size - 1 <= end < len(self):
            raise ValueError(f"end: {end} leaves fewer than {size} bars (have {len(self)})")
        s = slice(end - size + 1, end + 1)
        return Bars(self.open[s], self.high[s], self.low[s], self.close[s], self.volume[s])

    def scaled(self, factor: float) -> Bars:
        """Prices multiplied by ``factor`` (volume unchanged)."""
        return Bars(
            self.open * factor,
            self.high * factor,
            self.low * factor,
            self.close * factor,
            self.volume,
        )


def true_range(bars: Bars) -> FloatArray:
    """High - low, widened to the previous close (the first bar: high - low)."""
    prev = np.concatenate([bars.close[:1], bars.close[:-1]])
    return np.asarray(np.maximum(bars.high, prev) - np.minimum(bars.low, prev), dtype=np.float64)


def atr(bars: Bars) -> float:
    """The window's ATR: the median true range of its bars (a floor keeps it positive).

    The median, not the mean: a planted pole or blow-off bar must not inflate the unit it is
    measured in."""
    value = float(np.median(true_range(bars)))
    return max(value, 1e-12 * float(np.mean(bars.close)))


def ema(values: FloatArray, span: int) -> FloatArray:
    """Exponential moving average, ``alpha = 2 / (span + 1)``, seeded with the first value."""
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(values)
    acc = float(values[0])
    for i, v in enumerate(values):
        acc = acc + alpha * (float(v) - acc)
        out[i] = acc
    return out


def rsi(close: FloatArray, period: int = 14) -> FloatArray:
    """Wilder's RSI in [0, 100] (50 where there has been no move yet)."""
    diff = np.diff(close, prepend=close[0])
    up = np.maximum(diff, 0.0)
    down = np.maximum(-diff, 0.0)
    out = np.empty_like(close)
    avg_up = avg_down = 0.0
    for i in range(len(close)):
        # Wilder smoothing, warmed up with a running mean over the first ``period`` bars.
        k = min(i + 1, period)
        avg_up += (up[i] - avg_up) / k
        avg_down += (down[i] - avg_down) / k
        total = avg_up + avg_down
        out[i] = 50.0 if total <= 0 else 100.0 * avg_up / total
    return out
