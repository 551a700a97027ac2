"""The market replay feeder (``hindsight replay``): upstream tools + trading engine, replayed.

It plays real bars (``backtesting``'s EURUSD hourly and GOOG daily, or a seeded synthetic
market) bar by bar and, using only the public contracts, does what the upstream tools and
the trading engine would do:

* **Rules** (:mod:`.rules`, version ``replay-rules/1``): a *breakout* (close beyond the
  previous 20-bar high/low, ATR(14)/ATR(100) in 0.8..2.5; stop 1.5 ATR, target 3 ATR) and
  a *pullback* (EMA(50) slope > 0.2 ATR per 5 bars, bar retraces to the EMA(20) and closes
  back with the trend; stop 1.2 ATR, target 2 ATR). One open trade per symbol, setup and
  side. Entry at the signal bar's close.
* **Features** (:mod:`.features`, ``feature_schema_version=1``, 29 stable names): from
  past bars only (volatility, ATR%, momentum over 3/10/20/50 bars, EMA slopes and
  distances, Bollinger position/width, RSI, distance to the 20-bar high/low, 100-bar
  range position, candle body, volume ratio, the previous completed day's (week's, for
  daily bars) trend, hour of day, day of week) plus the signal's own (side, setup,
  trend/HTF alignment, reward:risk).
* **Per signal**, at its bar: ``signal.features``; the gateway's ``Score`` (gRPC, 200 ms
  deadline; a failure is counted, never fatal); two charts (original: bars up to the
  signal; annotated: entry/stop/target and a side arrow) under
  ``HINDSIGHT_DATA_DIR/images/replay/<run_id>/<symbol>/`` → two ``png.created``;
  ``json.created`` trade_meta (open) and an ``llm_suggestion`` from
  ``rule-based-stand-in/1`` (NOT an LLM).
* **Per trade**, at its exit bar (stop, target, time exit after 48 hourly / 20 daily bars,
  or the last bar): ``signal.outcome`` and trade_meta (closed).
* **Resume**: ``HINDSIGHT_DATA_DIR/replay/<run_id>.json`` holds the last bar whose every
  publish was acknowledged (and the Score calls past it); ids are deterministic
  (``signal_id = <run_id>:<symbol>:<bar time>:<setup>``) and every publish carries
  ``Nats-Msg-Id``, so a restart sends nothing twice.

Entry points: ``hindsight replay``, ``python -m hindsight.devstack.replay``, and
:func:`run_replay` (blocking, stops on a ``threading.Event``). See docs/replay.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import ReplayCounters, replay, run_replay
    from .settings import ReplaySettings, build_settings

__all__ = ["ReplayCounters", "ReplaySettings", "build_settings", "replay", "run_replay"]

_LAZY = {
    "ReplayCounters": "runner",
    "replay": "runner",
    "run_replay": "runner",
    "ReplaySettings": "settings",
    "build_settings": "settings",
}


def __getattr__(name: str) -> Any:
    # Lazy: `hindsight --help` must not pay for pandas, grpc and NATS.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
