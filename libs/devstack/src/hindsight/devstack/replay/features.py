"""Indicators and the feature vector of a signal, computed from PAST bars only.

Every column at bar ``t`` depends on bars ``0..t`` alone (rolling windows, recursive
EMAs, and a higher-timeframe trend taken from the previous COMPLETED day or week), so
changing any bar after ``t`` leaves row ``t`` unchanged; a unit test proves it. The
signal is taken at the close of bar ``t``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from .data import Bars

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SCHEMA_VERSION",
    "MARKET_FEATURES",
    "SIGNAL_FEATURES",
    "WARMUP_BARS",
    "compute_indicators",
    "signal_features",
]

FEATURE_SCHEMA_VERSION = 1
WARMUP_BARS = 120
"""No signal before this many bars: every window is full by then."""

MARKET_FEATURES: tuple[str, ...] = (
    "atr_pct_14",  # ATR(14) / close: volatility
    "vol_20",  # std of log returns over 20 bars
    "atr_ratio_14_100",  # ATR(14) / ATR(100): volatility expanding or contracting
    "mom_3",  # momentum: close - close 3 bars ago, in ATRs
    "mom_10",
    "mom_20",
    "mom_50",
    "ema_slope_20",  # EMA(20) change over 5 bars, in ATRs
    "ema_slope_50",
    "ema_dist_20",  # (close - EMA(20)) in ATRs
    "ema_dist_50",
    "bb_pos_20",  # position in the Bollinger band (-1 lower band .. +1 upper band)
    "bb_width_20",  # band width / middle
    "rsi_14",
    "dist_high_20",  # distance to the previous 20-bar high, in ATRs (>= 0 below it)
    "dist_low_20",  # distance to the previous 20-bar low, in ATRs (>= 0 above it)
    "range_pos_100",  # where the close sits in the 100-bar range (0 low .. 1 high)
    "body_ratio",  # |close - open| / (high - low) of the signal bar
    "volume_ratio_20",  # volume / mean volume of 20 bars
    "htf_trend",  # higher timeframe (day for 1h, week for 1d) EMA slope, % per period
    "htf_dist",  # (close - higher-timeframe EMA) in ATRs
    "hour_sin",  # hour of day (0 for daily bars) on the unit circle
    "hour_cos",
    "day_of_week",  # 0 Monday .. 6 Sunday
)
SIGNAL_FEATURES: tuple[str, ...] = (
    "side_sign",  # +1 buy, -1 sell
    "setup_breakout",  # 1 breakout, 0 pullback
    "trend_align",  # side_sign * ema_slope_50
    "htf_align",  # side_sign * htf_trend
    "risk_reward",  # |tp - entry| / |entry - sl|
)
FEATURE_NAMES: tuple[str, ...] = MARKET_FEATURES + SIGNAL_FEATURES
"""Stable feature names of ``feature_schema_version`` 1, in order."""


def _wilder(series: pd.Series, period: int) -> pd.Series:
    return series.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()


def _higher_timeframe(close: pd.Series, timeframe: str) -> tuple[pd.Series, pd.Series]:
    """(EMA, EMA slope %) of the higher timeframe, as of the previous completed period."""
    index = pd.DatetimeIndex(close.index)
    if timeframe == "1d":  # daily bars: weekly bias, weeks starting on Monday
        period = (index - pd.to_timedelta(index.day_of_week, unit="D")).floor("D")
    else:  # intraday bars: daily bias
        period = index.floor("D")
    period_close = close.groupby(period).last()
    ema = period_close.ewm(span=10, adjust=False, min_periods=3).mean()
    slope = (ema / ema.shift(3) - 1.0) * 100.0
    # Only periods that ended before the bar's own period: shift by one period.
    ema_prev = ema.shift(1).reindex(period).to_numpy()
    slope_prev = slope.shift(1).reindex(period).to_numpy()
    return pd.Series(ema_prev, index=close.index), pd.Series(slope_prev, index=close.index)


def compute_indicators(bars: Bars) -> pd.DataFrame:
    """Every market feature plus the helper columns the rules use (``atr``, ``ema20`` ...)."""
    f = bars.frame
    o, h, low, c, v = f["Open"], f["High"], f["Low"], f["Close"], f["Volume"]
    prev_close = c.shift(1)
    true_range = pd.concat([h - low, (h - prev_close).abs(), (low - prev_close).abs()], axis=1).max(
        axis=1
    )
    atr = _wilder(true_range, 14)
    atr100 = _wilder(true_range, 100)
    log_ret = np.log(c / prev_close)
    ema20 = c.ewm(span=20, adjust=False, min_periods=20).mean()
    ema50 = c.ewm(span=50, adjust=False, min_periods=50).mean()
    ma20 = c.rolling(20).mean()
    sd20 = c.rolling(20).std(ddof=0)
    delta = c.diff()
    gain = _wilder(delta.clip(lower=0.0), 14)
    loss = _wilder((-delta).clip(lower=0.0), 14)
    rsi = 100.0 - 100.0 / (1.0 + gain / loss.replace(0.0, np.nan))
    rsi = rsi.where(loss != 0.0, 100.0).where(gain.notna())
    high20 = h.shift(1).rolling(20).max()  # the previous 20 bars, excluding this one
    low20 = low.shift(1).rolling(20).min()
    high100 = h.rolling(100).max()
    low100 = low.rolling(100).min()
    htf_ema, htf_slope = _higher_timeframe(c, bars.timeframe)
    index = pd.DatetimeIndex(f.index)
    hour = index.hour.to_numpy() if bars.timeframe != "1d" else np.zeros(len(f))
    bar_range = (h - low).replace(0.0, np.nan)
    out = pd.DataFrame(
        {
            "atr_pct_14": atr / c,
            "vol_20": log_ret.rolling(20).std(ddof=0),
            "atr_ratio_14_100": atr / atr100,
            "mom_3": (c - c.shift(3)) / atr,
            "mom_10": (c - c.shift(10)) / atr,
            "mom_20": (c - c.shift(20)) / atr,
            "mom_50": (c - c.shift(50)) / atr,
            "ema_slope_20": (ema20 - ema20.shift(5)) / atr,
            "ema_slope_50": (ema50 - ema50.shift(5)) / atr,
            "ema_dist_20": (c - ema20) / atr,
            "ema_dist_50": (c - ema50) / atr,
            "bb_pos_20": (c - ma20) / (2.0 * sd20.replace(0.0, np.nan)),
            "bb_width_20": 4.0 * sd20 / ma20,
            "rsi_14": rsi,
            "dist_high_20": (high20 - c) / atr,
            "dist_low_20": (c - low20) / atr,
            "range_pos_100": (c - low100) / (high100 - low100).replace(0.0, np.nan),
            "body_ratio": ((c - o).abs() / bar_range).fillna(0.0),
            "volume_ratio_20": v / v.rolling(20).mean().replace(0.0, np.nan),
            "htf_trend": htf_slope,
            "htf_dist": (c - htf_ema) / atr,
            "hour_sin": np.sin(2 * math.pi * hour / 24.0),
            "hour_cos": np.cos(2 * math.pi * hour / 24.0),
            "day_of_week": index.day_of_week.to_numpy().astype(np.float64),
            # helpers for the rules (not features)
            "atr": atr,
            "ema20": ema20,
            "ema50": ema50,
            "high20": high20,
            "low20": low20,
        },
        index=f.index,
    )
    return out.replace([np.inf, -np.inf], np.nan)


def signal_features(
    row: pd.Series, *, side: str, setup: str, entry: float, sl: float, tp: float
) -> dict[str, float]:
    """The feature vector of one signal: the bar's market features plus the signal's own."""
    sign = 1.0 if side == "buy" else -1.0
    values = {name: round(float(row[name]), 8) for name in MARKET_FEATURES}
    values["side_sign"] = sign
    values["setup_breakout"] = 1.0 if setup == "breakout" else 0.0
    values["trend_align"] = round(sign * values["ema_slope_50"], 8)
    values["htf_align"] = round(sign * values["htf_trend"], 8)
    values["risk_reward"] = round(abs(tp - entry) / abs(entry - sl), 8)
    return values
