"""The replay plan: every trade of a data set, with deterministic ids, features and outcome.

One position per symbol, setup and side at a time: a setup fires again on the same side
only once the previous trade of that setup and side closed (on its exit bar at the
earliest). Everything here is pure and
deterministic, so a restarted replay computes the same plan and skips what it published.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime

from hindsight.common.events import format_utc

from .data import Bars
from .features import FEATURE_NAMES, WARMUP_BARS, compute_indicators, signal_features
from .outcome import Outcome, simulate_trade
from .rules import ALL_KINDS, RULE_VERSION, Setup, detect_setup

__all__ = [
    "MAX_HOLD_BARS",
    "Trade",
    "default_run_id",
    "plan_trades",
    "signal_id_for",
    "trade_id_for",
]

MAX_HOLD_BARS: dict[str, int] = {"1h": 48, "1d": 20}
"""Time exit after this many bars, per timeframe."""


@dataclass(frozen=True, slots=True)
class Trade:
    """One signal of the replay and how its trade ends."""

    run_id: str
    data: str
    symbol: str
    timeframe: str
    bar: int
    ts: datetime
    setup: Setup
    features: dict[str, float]
    outcome: Outcome
    closed_at: datetime
    signal_id: str
    trade_id: str

    @property
    def rule_version(self) -> str:
        return RULE_VERSION


def default_run_id(data: list[str] | tuple[str, ...], *, seed: int | None = None) -> str:
    """``replay-<data sets>-r1`` (plus the seed for synthetic data): stable across restarts."""
    version = RULE_VERSION.rsplit("/", 1)[-1]
    name = "-".join(data)
    if "synthetic" in data and seed is not None:
        name += f"-s{seed}"
    return f"replay-{name}-r{version}"


def signal_id_for(run_id: str, symbol: str, ts: datetime, setup: str) -> str:
    """``<run_id>:<symbol>:<bar time>:<setup>``."""
    return f"{run_id}:{symbol}:{format_utc(ts)}:{setup}"


def trade_id_for(signal_id: str, symbol: str, ts: datetime) -> str:
    """A file-name-safe trade id: ``<symbol>-<bar time>-<10 hex of the signal id>``."""
    digest = hashlib.sha256(signal_id.encode()).hexdigest()[:10]
    return f"{symbol.lower()}-{ts:%Y%m%dT%H%M}-{digest}"


def plan_trades(bars: Bars, *, run_id: str) -> list[Trade]:
    """Every trade the rules take on ``bars``, in time order."""
    ind = compute_indicators(bars)
    frame = bars.frame
    open_, high, low, close = bars.open, bars.high, bars.low, bars.close
    max_hold = MAX_HOLD_BARS.get(bars.timeframe, 48)
    last = len(bars) - 1
    trades: list[Trade] = []
    # Exit bar of the open trade of each (setup, side): no new one of that kind before it.
    busy_until: dict[tuple[str, str], int] = {}
    for t in range(WARMUP_BARS, last):
        row = ind.iloc[t]
        allowed = [key for key in ALL_KINDS if t >= busy_until.get(key, -1)]
        setup = detect_setup(frame.iloc[t], row, allowed=allowed)
        if setup is None:
            continue
        features = signal_features(
            row, side=setup.side, setup=setup.setup, entry=setup.entry, sl=setup.sl, tp=setup.tp
        )
        if not all(math.isfinite(features[name]) for name in FEATURE_NAMES):
            continue  # higher-timeframe history still too short
        outcome = simulate_trade(
            open_=open_,
            high=high,
            low=low,
            close=close,
            bar=t,
            side=setup.side,
            entry=setup.entry,
            sl=setup.sl,
            tp=setup.tp,
            max_hold=max_hold,
        )
        # The signal reads bar t's close: it exists once bar t has closed, not at its open.
        ts = bars.close_time(t)
        signal_id = signal_id_for(run_id, bars.symbol, ts, setup.setup)
        trades.append(
            Trade(
                run_id=run_id,
                data=bars.name,
                symbol=bars.symbol,
                timeframe=bars.timeframe,
                bar=t,
                ts=ts,
                setup=setup,
                features=features,
                outcome=outcome,
                closed_at=bars.close_time(outcome.exit_bar),
                signal_id=signal_id,
                trade_id=trade_id_for(signal_id, bars.symbol, ts),
            )
        )
        busy_until[(setup.setup, setup.side)] = outcome.exit_bar
    return trades
