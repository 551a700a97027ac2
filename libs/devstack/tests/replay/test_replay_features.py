"""Features come from past bars only, with stable names."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hindsight.devstack.replay.data import load_bars, synthetic_frame
from hindsight.devstack.replay.features import (
    FEATURE_NAMES,
    MARKET_FEATURES,
    WARMUP_BARS,
    compute_indicators,
    signal_features,
)

pytestmark = pytest.mark.unit


def _scramble_after(frame: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """Every bar after ``t`` replaced by a very different market."""
    rng = np.random.default_rng(seed)
    changed = frame.copy()
    n = len(frame) - t - 1
    base = float(frame["Close"].iloc[t])
    close = base * np.exp(np.cumsum(rng.normal(0.01, 0.05, size=n)))
    changed.iloc[t + 1 :, changed.columns.get_loc("Open")] = close * 1.01
    changed.iloc[t + 1 :, changed.columns.get_loc("High")] = close * 1.2
    changed.iloc[t + 1 :, changed.columns.get_loc("Low")] = close * 0.8
    changed.iloc[t + 1 :, changed.columns.get_loc("Close")] = close
    changed.iloc[t + 1 :, changed.columns.get_loc("Volume")] = rng.integers(1, 10**6, size=n)
    return changed


@pytest.mark.parametrize(("name", "t"), [("eurusd", 700), ("eurusd", 2000), ("goog", 400)])
def test_no_look_ahead(name: str, t: int) -> None:
    bars = load_bars(name)
    before = compute_indicators(bars)
    after = compute_indicators(bars.with_frame(_scramble_after(bars.frame, t, seed=t)))
    # Row t and every earlier row are identical (NaN where NaN), the future did change.
    pd.testing.assert_frame_equal(before.iloc[: t + 1], after.iloc[: t + 1])
    assert not before.iloc[t + 1 :].equals(after.iloc[t + 1 :])


def test_every_feature_is_finite_after_warm_up_and_names_are_stable() -> None:
    bars = load_bars("eurusd")
    ind = compute_indicators(bars)
    assert 20 <= len(FEATURE_NAMES) <= 30 and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert np.isfinite(ind.loc[:, list(MARKET_FEATURES)].iloc[WARMUP_BARS:].to_numpy()).all()
    row = ind.iloc[1000]
    features = signal_features(row, side="sell", setup="pullback", entry=1.1, sl=1.11, tp=1.08)
    assert tuple(features) == FEATURE_NAMES
    assert features["side_sign"] == -1.0 and features["setup_breakout"] == 0.0
    assert math.isclose(features["risk_reward"], 2.0)
    assert features["trend_align"] == pytest.approx(-features["ema_slope_50"])
    assert 0.0 <= features["rsi_14"] <= 100.0


def test_higher_timeframe_bias_uses_previous_days_only() -> None:
    frame = synthetic_frame(600, seed=3)
    bars = load_bars("synthetic").with_frame(frame)
    ind = compute_indicators(bars)
    days = pd.DatetimeIndex(frame.index).floor("D")
    # Within one day the bias does not move: it is the previous completed day's value.
    per_day = ind["htf_trend"].groupby(days).nunique(dropna=False)
    assert (per_day == 1).all()
