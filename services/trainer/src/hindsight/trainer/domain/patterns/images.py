"""A 64×64×3 float32 chart image in [0, 1] from the last 64 bars (point in time).

The image is a function of the 64 bars of the window alone (indices ``end - 63 .. end``):
the indicators below are computed inside the window, so no bar after ``end`` (and none
before the window) can change it. Column ``x`` (0..63) is bar ``x`` of the window, oldest
left; row 0 is the top. Every channel depends on prices only through ratios, so multiplying
all prices by a constant leaves the image unchanged (exactly for powers of two).

Channel 0, candle texture: price ``p`` maps to row ``63 - round(63 * (p - lo) / (hi - lo))``
with ``lo``/``hi`` the window's lowest low and highest high (a flat window draws every
candle on row 32). The wick (low..high rows) is drawn at ``WICK`` = 0.4, the body
(open..close rows, inclusive) at ``BODY_UP`` = 1.0 for a bar closing at or above its open
and ``BODY_DOWN`` = 0.7 otherwise; the background is 0.

Channel 1, EMA distance: ``d = log(C / EMA21(C)) / a`` with ``a`` the window's mean
``log(H / L)`` (its typical bar range, floored at 1e-12), clipped to ``[-4, 4]`` (i.e. four
bar ranges away from the EMA), as an area plot: level row ``r = round(31.5 - 31.5 * d / 4)``,
and every pixel of the column between the centre line (rows 31/32) and ``r`` is 1.

Channel 2, RSI momentum with slope: RSI14 (Wilder) at row ``round(63 * (1 - RSI / 100))``,
joined to the previous bar's row by a vertical segment; the drawn pixels carry the slope
``s = RSI_t - RSI_{t-3}`` as intensity ``0.25 + 0.75 * (clip(s, -30, 30) + 30) / 60`` (so a
drawn pixel is never 0, and a rising RSI is brighter than a falling one).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hindsight.trainer.domain.patterns.bars import WINDOW, Bars, ema, rsi

__all__ = [
    "BODY_DOWN",
    "BODY_UP",
    "CHANNELS",
    "EMA_CLIP",
    "IMAGE_SHAPE",
    "WICK",
    "chart_image",
    "chart_images",
]

CHANNELS = ("candles", "ema_distance", "rsi_momentum")
IMAGE_SHAPE = (WINDOW, WINDOW, len(CHANNELS))
WICK = 0.4
BODY_UP = 1.0
BODY_DOWN = 0.7
EMA_SPAN = 21
EMA_CLIP = 4.0
RSI_PERIOD = 14
RSI_SLOPE_LAG = 3
RSI_SLOPE_CLIP = 30.0

ImageArray = npt.NDArray[np.float32]
_TOP = WINDOW - 1


def _price_rows(prices: npt.NDArray[np.float64], lo: float, hi: float) -> npt.NDArray[np.int64]:
    if hi <= lo:
        return np.full(prices.shape, WINDOW // 2, dtype=np.int64)
    scaled = (prices - lo) / (hi - lo)
    return (_TOP - np.rint(_TOP * np.clip(scaled, 0.0, 1.0))).astype(np.int64)


def _fill(channel: npt.NDArray[np.float32], col: int, a: int, b: int, value: float) -> None:
    top, bottom = (a, b) if a <= b else (b, a)
    seg = channel[top : bottom + 1, col]
    np.maximum(seg, np.float32(value), out=seg)


def _candles(bars: Bars) -> npt.NDArray[np.float32]:
    out = np.zeros((WINDOW, WINDOW), dtype=np.float32)
    lo, hi = float(bars.low.min()), float(bars.high.max())
    high, low = _price_rows(bars.high, lo, hi), _price_rows(bars.low, lo, hi)
    opn, close = _price_rows(bars.open, lo, hi), _price_rows(bars.close, lo, hi)
    for x in range(WINDOW):
        _fill(out, x, int(high[x]), int(low[x]), WICK)
        body = BODY_UP if bars.close[x] >= bars.open[x] else BODY_DOWN
        _fill(out, x, int(opn[x]), int(close[x]), body)
    return out


def _ema_distance(bars: Bars) -> npt.NDArray[np.float32]:
    out = np.zeros((WINDOW, WINDOW), dtype=np.float32)
    typical = max(float(np.mean(np.log(bars.high / bars.low))), 1e-12)
    d = np.clip(np.log(bars.close / ema(bars.close, EMA_SPAN)) / typical, -EMA_CLIP, EMA_CLIP)
    centre = _TOP / 2.0
    rows = np.rint(centre - centre * d / EMA_CLIP).astype(np.int64)
    for x in range(WINDOW):
        anchor = WINDOW // 2 - 1 if rows[x] < centre else WINDOW // 2
        _fill(out, x, anchor, int(rows[x]), 1.0)
    return out


def _rsi_momentum(bars: Bars) -> npt.NDArray[np.float32]:
    out = np.zeros((WINDOW, WINDOW), dtype=np.float32)
    values = rsi(bars.close, RSI_PERIOD)
    lagged = np.concatenate([np.full(RSI_SLOPE_LAG, values[0]), values[:-RSI_SLOPE_LAG]])
    slope = np.clip(values - lagged, -RSI_SLOPE_CLIP, RSI_SLOPE_CLIP)
    intensity = 0.25 + 0.75 * (slope + RSI_SLOPE_CLIP) / (2 * RSI_SLOPE_CLIP)
    rows = np.rint(_TOP * (1.0 - values / 100.0)).astype(np.int64)
    for x in range(WINDOW):
        prev = int(rows[x - 1]) if x > 0 else int(rows[x])
        _fill(out, x, prev, int(rows[x]), float(intensity[x]))
    return out


def chart_image(bars: Bars) -> ImageArray:
    """The 64×64×3 image (HWC, float32, [0, 1]) of a window of exactly 64 bars."""
    if len(bars) != WINDOW:
        raise ValueError(f"bars: a window has {WINDOW} bars, got {len(bars)}")
    return np.stack([_candles(bars), _ema_distance(bars), _rsi_momentum(bars)], axis=-1)


def chart_images(bars: Bars, ends: npt.ArrayLike) -> ImageArray:
    """Images of the windows ending at each index in ``ends``: shape ``[N, 64, 64, 3]``."""
    idx = np.asarray(ends, dtype=np.int64).reshape(-1)
    out = np.empty((len(idx), *IMAGE_SHAPE), dtype=np.float32)
    for i, end in enumerate(idx):
        out[i] = chart_image(bars.window(int(end)))
    return out
