"""The rules fire on known patterns, with stop and target from the ATR."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hindsight.devstack.replay.data import Bars
from hindsight.devstack.replay.features import compute_indicators
from hindsight.devstack.replay.rules import detect_setup

pytestmark = pytest.mark.unit


def _bars(close: np.ndarray, *, spread: float = 0.2) -> Bars:
    open_ = np.concatenate([[close[0]], close[:-1]])
    frame = pd.DataFrame(
        {
            "Open": open_,
            "High": np.maximum(open_, close) + spread,
            "Low": np.minimum(open_, close) - spread,
            "Close": close,
            "Volume": np.full(len(close), 1000.0),
        },
        index=pd.date_range("2024-01-01", periods=len(close), freq="h", tz="UTC"),
    )
    return Bars(name="test", symbol="TEST", timeframe="1h", frame=frame)


def _wiggle(n: int, level: float = 100.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level + rng.normal(0.0, 0.3, size=n)


def test_breakout_up_after_a_range() -> None:
    close = np.concatenate([_wiggle(200), [102.5]])
    bars = _bars(close)
    ind = compute_indicators(bars)
    setup = detect_setup(bars.frame.iloc[-1], ind.iloc[-1])
    assert setup is not None and (setup.setup, setup.side) == ("breakout", "buy")
    atr = float(ind["atr"].iloc[-1])
    assert setup.entry == 102.5
    assert setup.sl == pytest.approx(102.5 - 1.5 * atr) and setup.tp == pytest.approx(
        102.5 + 3 * atr
    )


def test_breakout_down_and_not_when_that_kind_is_busy() -> None:
    close = np.concatenate([_wiggle(200), [97.5]])
    bars = _bars(close)
    ind = compute_indicators(bars)
    setup = detect_setup(bars.frame.iloc[-1], ind.iloc[-1])
    assert setup is not None and (setup.setup, setup.side) == ("breakout", "sell")
    assert setup.sl > setup.entry > setup.tp
    busy = [("breakout", "buy"), ("pullback", "buy"), ("pullback", "sell")]
    assert detect_setup(bars.frame.iloc[-1], ind.iloc[-1], allowed=busy) is None


def test_pullback_to_the_ema_in_an_uptrend() -> None:
    trend = 100.0 + np.arange(200) * 0.15 + np.sin(np.arange(200) / 3.0) * 0.1
    bars = _bars(trend, spread=0.05)
    ind = compute_indicators(bars)
    ema20 = float(ind["ema20"].iloc[-2])  # the last bar moves the EMA a little
    # The last bar dips to the EMA(20) and closes back above it (no new high: no breakout).
    frame = bars.frame.copy()
    frame.iloc[-1, frame.columns.get_loc("Low")] = ema20 - 0.05
    frame.iloc[-1, frame.columns.get_loc("Open")] = ema20 + 0.3
    frame.iloc[-1, frame.columns.get_loc("Close")] = ema20 + 0.4
    frame.iloc[-1, frame.columns.get_loc("High")] = ema20 + 0.5
    bars = bars.with_frame(frame)
    ind = compute_indicators(bars)
    setup = detect_setup(bars.frame.iloc[-1], ind.iloc[-1])
    assert setup is not None and (setup.setup, setup.side) == ("pullback", "buy")
    assert setup.sl < setup.entry < setup.tp


def test_nothing_in_a_quiet_range() -> None:
    bars = _bars(_wiggle(300, seed=2) * 0 + 100.0 + np.sin(np.arange(300) / 2.0) * 0.05)
    ind = compute_indicators(bars)
    fired = [detect_setup(bars.frame.iloc[t], ind.iloc[t]) for t in range(150, 300)]
    assert all(s is None or s.setup != "pullback" for s in fired)
    assert sum(s is not None for s in fired) < 10
