"""Indicators: hand-computed values on tiny series, agreement with plain loop
implementations written here, and causality (a value never changes with later bars)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from hindsight.market.domain.indicators import INDICATOR_VERSION, atr, ema, realised_vol, rsi

pytestmark = pytest.mark.unit

Array = NDArray[np.float64]


def a(*values: float) -> Array:
    return np.array(values, dtype=np.float64)


def nan_equal(x: Array, y: Array) -> bool:
    return bool(np.array_equal(x, y, equal_nan=True))


# --- hand-computed values -------------------------------------------------------------


def test_atr_by_hand() -> None:
    high, low, close = a(10, 11, 12, 11, 15), a(8, 9, 10, 9, 14), a(9, 10, 11, 10, 14.5)
    # TR: 2 (h-l), 2, 2, 2 (|l - prev close| = 2), 5 (|h - prev close| = 15 - 10).
    # ATR(3): NaN, NaN, mean(2, 2, 2) = 2, (2*2 + 2)/3 = 2, (2*2 + 5)/3 = 3.
    out = atr(high, low, close, period=3)
    assert np.isnan(out[:2]).all()
    assert out[2:].tolist() == pytest.approx([2.0, 2.0, 3.0])


def test_rsi_by_hand() -> None:
    # Changes: +1, -0.5, +1.5, -1, +2. RSI(3) at index 3: gains 2.5/3, losses 0.5/3 -> RS 5.
    # Index 4: gain (2.5/3*2 + 0)/3 = 5/9, loss (0.5/3*2 + 1)/3 = 4/9 -> RS 1.25.
    # Index 5: gain (5/9*2 + 2)/3 = 28/27, loss (4/9*2)/3 = 8/27 -> RS 3.5.
    out = rsi(a(10, 11, 10.5, 12, 11, 13), period=3)
    assert np.isnan(out[:3]).all()
    assert out[3:].tolist() == pytest.approx([100 - 100 / 6, 100 - 100 / 2.25, 100 - 100 / 4.5])


def test_rsi_edges_all_gains_and_flat() -> None:
    assert rsi(a(1, 2, 3, 4), period=2)[2:].tolist() == [100.0, 100.0]
    assert rsi(a(5, 5, 5, 5), period=2)[2:].tolist() == [50.0, 50.0]
    assert rsi(a(4, 3, 2, 1), period=2)[2:].tolist() == [0.0, 0.0]


def test_ema_by_hand() -> None:
    # EMA(3): seed mean(1, 2, 3) = 2 at index 2, alpha 0.5: 3, then 4.
    out = ema(a(1, 2, 3, 4, 5), period=3)
    assert np.isnan(out[:2]).all()
    assert out[2:].tolist() == [2.0, 3.0, 4.0]


def test_realised_vol_by_hand() -> None:
    # Log returns 1, 0, 2; window 2 (ddof 1): std(1, 0) = sqrt(0.5), std(0, 2) = sqrt(2).
    out = realised_vol(np.exp(a(0, 1, 1, 3)), window=2)
    assert np.isnan(out[:2]).all()
    assert out[2:].tolist() == pytest.approx([math.sqrt(0.5), math.sqrt(2)])
    assert np.isnan(realised_vol(a(1, 2, 0, 3, 4), window=2)[2:4]).all()  # close 0: no log


def test_a_nan_propagates_forward_never_backward() -> None:
    nan = math.nan
    high, low, close = a(2, 2, 2, 2, 2), a(1, 1, 1, 1, 1), a(1.5, 1.5, nan, 1.5, 1.5)
    out = atr(high, low, close, period=2)
    assert out[1:3].tolist() == [1.0, 1.0] and np.isnan(out[3:]).all()  # TR 3 reads close 2
    out = ema(close, period=2)
    assert out[1] == 1.5 and np.isnan(out[2:]).all()
    assert np.isnan(rsi(close, period=2)[2:]).all()
    assert np.isnan(realised_vol(close, window=2)).all()


def test_short_series_are_all_warm_up() -> None:
    assert np.isnan(atr(a(2, 2), a(1, 1), a(1.5, 1.5), period=3)).all()
    assert np.isnan(rsi(a(1, 2, 3), period=3)).all()  # needs period changes
    assert np.isnan(ema(a(1, 2), period=3)).all()
    assert np.isnan(realised_vol(a(1, 2), window=2)).all()
    assert len(atr(a(), a(), a())) == 0


def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="same length"):
        atr(a(1, 2), a(1), a(1, 2))
    with pytest.raises(ValueError, match="period"):
        ema(a(1, 2), period=0)
    with pytest.raises(ValueError, match="window"):
        realised_vol(a(1, 2, 3), window=1)
    with pytest.raises(ValueError, match="close must be one-dimensional"):
        rsi(np.ones((2, 2)))
    assert INDICATOR_VERSION


# --- plain loop references -----------------------------------------------------------


def loop_atr(h: list[float], lo: list[float], c: list[float], n: int) -> list[float]:
    out, value = [], math.nan
    for i in range(len(h)):
        tr = (
            h[i] - lo[i]
            if i == 0
            else max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))
        )
        if i < n - 1:
            out.append(math.nan)
            continue
        if i == n - 1:
            trs = [h[0] - lo[0]] + [
                max(h[j] - lo[j], abs(h[j] - c[j - 1]), abs(lo[j] - c[j - 1])) for j in range(1, n)
            ]
            value = sum(trs) / n
        else:
            value = (value * (n - 1) + tr) / n
        out.append(value)
    return out


def loop_rsi(c: list[float], n: int) -> list[float]:
    out = []
    gain = loss = math.nan
    for i in range(len(c)):
        if i < n:
            out.append(math.nan)
            continue
        if i == n:
            d = [c[j] - c[j - 1] for j in range(1, n + 1)]
            gain = sum(max(x, 0) for x in d) / n
            loss = sum(max(-x, 0) for x in d) / n
        else:
            x = c[i] - c[i - 1]
            gain = (gain * (n - 1) + max(x, 0)) / n
            loss = (loss * (n - 1) + max(-x, 0)) / n
        out.append((100.0 if gain > 0 else 50.0) if loss == 0 else 100 - 100 / (1 + gain / loss))
    return out


def loop_ema(c: list[float], n: int) -> list[float]:
    out = []
    value = math.nan
    for i in range(len(c)):
        if i < n - 1:
            out.append(math.nan)
            continue
        value = sum(c[:n]) / n if i == n - 1 else value + 2 / (n + 1) * (c[i] - value)
        out.append(value)
    return out


def loop_vol(c: list[float], w: int) -> list[float]:
    out = []
    for i in range(len(c)):
        if i < w:
            out.append(math.nan)
            continue
        r = [math.log(c[j] / c[j - 1]) for j in range(i - w + 1, i + 1)]
        mean = sum(r) / w
        out.append(math.sqrt(sum((x - mean) ** 2 for x in r) / (w - 1)))
    return out


price = st.floats(min_value=1.0, max_value=1000.0, allow_nan=False)


@st.composite
def ohlc(draw: st.DrawFn, min_size: int = 0) -> tuple[Array, Array, Array]:
    n = draw(st.integers(min_value=min_size, max_value=40))
    highs, lows, closes = [], [], []
    for _ in range(n):
        x, y, z = draw(price), draw(price), draw(price)
        lo, hi = min(x, y, z), max(x, y, z)
        highs.append(hi)
        lows.append(lo)
        closes.append(sorted((x, y, z))[1])
    return a(*highs), a(*lows), a(*closes)


periods = st.integers(min_value=1, max_value=8)


@settings(max_examples=150, deadline=None)
@given(ohlc(), periods)
def test_atr_matches_the_loop(bars: tuple[Array, Array, Array], n: int) -> None:
    h, lo, c = bars
    expected = loop_atr(h.tolist(), lo.tolist(), c.tolist(), n)
    assert np.allclose(atr(h, lo, c, period=n), expected, equal_nan=True, rtol=1e-12)


@settings(max_examples=150, deadline=None)
@given(ohlc(), periods)
def test_rsi_ema_vol_match_the_loops(bars: tuple[Array, Array, Array], n: int) -> None:
    c = bars[2]
    assert np.allclose(rsi(c, period=n), loop_rsi(c.tolist(), n), equal_nan=True, atol=1e-9)
    assert np.allclose(ema(c, period=n), loop_ema(c.tolist(), n), equal_nan=True, rtol=1e-12)
    w = n + 1
    assert np.allclose(
        realised_vol(c, window=w), loop_vol(c.tolist(), w), equal_nan=True, atol=1e-12
    )


# --- causality -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(ohlc(min_size=1), ohlc(), periods, st.data())
def test_a_value_never_changes_with_later_bars(
    bars: tuple[Array, Array, Array],
    other: tuple[Array, Array, Array],
    n: int,
    data: st.DataObject,
) -> None:
    """Replacing everything after index i (different values, different length) leaves every
    indicator's values up to i unchanged, bit for bit."""
    h, lo, c = bars
    i = data.draw(st.integers(min_value=0, max_value=len(c) - 1))
    h2 = np.concatenate([h[: i + 1], other[0]])
    lo2 = np.concatenate([lo[: i + 1], other[1]])
    c2 = np.concatenate([c[: i + 1], other[2]])
    keep = slice(0, i + 1)
    assert nan_equal(atr(h, lo, c, n)[keep], atr(h2, lo2, c2, n)[keep])
    assert nan_equal(ema(c, n)[keep], ema(c2, n)[keep])
    assert nan_equal(rsi(c, n)[keep], rsi(c2, n)[keep])
    assert nan_equal(realised_vol(c, n + 1)[keep], realised_vol(c2, n + 1)[keep])
