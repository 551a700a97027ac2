"""Synthetic bars with planted patterns (tests and benches; the detectors still label them).

Prices are built in "units" (a bar's typical range is about one unit) from a random-walk
close path; each segment of 64 bars ends with the planted pattern, mirrored at random
(bull or bear), and the next segment continues from the last close.
"""

from __future__ import annotations

import numpy as np

from hindsight.trainer.domain.patterns.bars import WINDOW, Bars, FloatArray
from hindsight.trainer.domain.patterns.detectors import CLASSES

__all__ = ["planted_series", "planted_window"]

_UNIT = 0.001
"""One unit as a share of the base price (an hourly FX-like bar)."""


def _walk(rng: np.random.Generator, n: int, sigma: float = 0.5) -> FloatArray:
    return rng.normal(0.0, sigma, size=n)


def _steps(pattern: str, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Close-to-close steps (units) of one segment and the extra wick of each bar."""
    steps = _walk(rng, WINDOW)
    wicks = np.abs(rng.normal(0.0, 0.25, size=WINDOW))
    if pattern == "flag":
        k, m = int(rng.integers(4, 8)), int(rng.integers(7, 15))
        pole = rng.uniform(7.0, 12.0)
        steps[-(k + m) : -m] = pole / k + rng.normal(0.0, 0.15, size=k)
        steps[-m:] = -pole * rng.uniform(0.1, 0.3) / m + rng.normal(0.0, 0.12, size=m)
        wicks[-m:] *= 0.4
    elif pattern == "blow_off":
        ramp = np.geomspace(0.4, rng.uniform(3.0, 4.5), 8)
        steps[-8:] = ramp + rng.normal(0.0, 0.05, size=8)
        wicks[-1] = 0.6
    elif pattern == "wick_exhaustion":
        steps[-21:-1] = rng.uniform(0.3, 0.5) + rng.normal(0.0, 0.2, size=20)
        steps[-1] = rng.normal(0.0, 0.1)
    elif pattern == "wedge":
        t = np.arange(30, dtype=np.float64)
        upper = 6.0 + rng.uniform(0.08, 0.15) * t
        lower = 0.0 + rng.uniform(0.25, 0.32) * t
        phase = rng.uniform(0, 2 * np.pi)
        level = lower + (upper - lower) * (0.5 + 0.45 * np.sin(2 * np.pi * t / 7.5 + phase))
        steps[-30:] = np.diff(level, prepend=level[0] - 0.1) + rng.normal(0.0, 0.05, size=30)
        wicks[-30:] *= 0.3
    elif pattern != "none":
        raise ValueError(f"pattern: unknown {pattern!r} (one of {CLASSES})")
    return steps, wicks


def _price(units: FloatArray, base: float) -> FloatArray:
    return np.asarray(base * np.exp(units * _UNIT), dtype=np.float64)


def _bars(levels: FloatArray, wicks: FloatArray, start: float, base: float) -> Bars:
    close = levels
    opn = np.concatenate([[start], close[:-1]])
    high = np.maximum(opn, close) + wicks
    low = np.minimum(opn, close) - wicks
    return Bars.from_arrays(
        open=_price(opn, base),
        high=_price(high, base),
        low=_price(low, base),
        close=_price(close, base),
        volume=np.full(len(close), 1000.0),
    )


def planted_window(pattern: str, rng: np.random.Generator, base: float = 100.0) -> Bars:
    """64 bars ending with ``pattern`` planted (mirrored at random)."""
    steps, wicks = _steps(pattern, rng)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if pattern == "wick_exhaustion":
        wicks[-1] = 0.0
    levels = np.cumsum(sign * steps)
    if pattern == "wick_exhaustion":
        # The rejection wick points against the advance: above a rise, below a fall.
        bars = _bars(levels, wicks, 0.0, base)
        w = rng.uniform(3.0, 4.5) * _UNIT
        high, low = bars.high.copy(), bars.low.copy()
        if sign > 0:
            high[-1] = max(high.max(), high[-1]) * np.exp(w)
        else:
            low[-1] = min(low.min(), low[-1]) * np.exp(-w)
        return Bars.from_arrays(
            open=bars.open, high=high, low=low, close=bars.close, volume=bars.volume
        )
    return _bars(levels, wicks, 0.0, base)


def planted_series(
    patterns: list[str], rng: np.random.Generator, base: float = 100.0
) -> tuple[Bars, list[int]]:
    """Consecutive 64-bar segments, one per entry of ``patterns``, and each segment's end."""
    parts: list[Bars] = []
    level = base
    for name in patterns:
        seg = planted_window(name, rng, base=level)
        parts.append(seg)
        level = float(seg.close[-1])
    bars = Bars.from_arrays(
        open=np.concatenate([p.open for p in parts]),
        high=np.concatenate([p.high for p in parts]),
        low=np.concatenate([p.low for p in parts]),
        close=np.concatenate([p.close for p in parts]),
        volume=np.concatenate([p.volume for p in parts]),
    )
    ends = [WINDOW * (i + 1) - 1 for i in range(len(patterns))]
    return bars, ends
