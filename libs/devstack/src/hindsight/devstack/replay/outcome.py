"""Simulate a trade on the bars after its signal: stop, target or time exit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["BREAKEVEN_R", "ExitReason", "Outcome", "Result", "simulate_trade"]

BREAKEVEN_R = 0.1
"""|realised R| below this is a breakeven."""

Result = Literal["win", "loss", "breakeven"]
ExitReason = Literal["stop", "target", "time", "end_of_data"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a trade ended. Excursions and pnl are in price units per unit traded."""

    exit_bar: int
    exit_price: float
    reason: ExitReason
    result: Result
    pnl: float
    realised_r: float
    mfe: float
    """Maximum favourable excursion (>= 0)."""
    mae: float
    """Maximum adverse excursion (>= 0)."""


def simulate_trade(
    *,
    open_: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64],
    bar: int,
    side: str,
    entry: float,
    sl: float,
    tp: float,
    max_hold: int,
) -> Outcome:
    """Enter at the close of ``bar``; walk the next bars until a level is hit.

    A bar that touches both levels counts as a stop (the cautious reading). A bar that
    opens beyond a level fills at its open (gap). After ``max_hold`` bars the trade
    exits at the close; on the last bar of the data it exits there (``end_of_data``).
    """
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be buy or sell, got {side!r}")
    sign = 1.0 if side == "buy" else -1.0
    risk = abs(entry - sl)
    if risk <= 0:
        raise ValueError("the stop must differ from the entry")
    last = len(close) - 1
    if bar >= last:
        raise ValueError("a trade needs at least one bar after its signal")
    mfe = mae = 0.0
    for j in range(bar + 1, min(bar + max_hold, last) + 1):
        o, h, lo = float(open_[j]), float(high[j]), float(low[j])
        fav = (h - entry) if sign > 0 else (entry - lo)
        adv = (entry - lo) if sign > 0 else (h - entry)
        stop_gap = (o <= sl) if sign > 0 else (o >= sl)
        stop_hit = (lo <= sl) if sign > 0 else (h >= sl)
        target_gap = (o >= tp) if sign > 0 else (o <= tp)
        target_hit = (h >= tp) if sign > 0 else (lo <= tp)
        exit_price: float | None = None
        reason: ExitReason = "stop"
        if stop_gap or (stop_hit and not target_gap):
            exit_price = o if stop_gap else sl
            mfe = max(mfe, fav if not stop_gap else (o - entry) * sign)
            mae = max(mae, (entry - exit_price) * sign)
        elif target_gap or target_hit:
            exit_price, reason = (o if target_gap else tp), "target"
            mfe = max(mfe, (exit_price - entry) * sign)
            mae = max(mae, adv if not target_gap else (entry - o) * sign)
        if exit_price is not None:
            return _outcome(j, exit_price, reason, entry, sign, risk, mfe, mae)
        mfe, mae = max(mfe, fav), max(mae, adv)
        if j - bar >= max_hold or j == last:
            reason = "time" if j - bar >= max_hold else "end_of_data"
            return _outcome(j, float(close[j]), reason, entry, sign, risk, mfe, mae)
    raise AssertionError("unreachable: the loop always exits")  # pragma: no cover


def _outcome(
    bar: int,
    exit_price: float,
    reason: ExitReason,
    entry: float,
    sign: float,
    risk: float,
    mfe: float,
    mae: float,
) -> Outcome:
    pnl = (exit_price - entry) * sign
    r = pnl / risk
    result: Result = "win" if r > BREAKEVEN_R else "loss" if r < -BREAKEVEN_R else "breakeven"
    return Outcome(
        exit_bar=bar,
        exit_price=exit_price,
        reason=reason,
        result=result,
        pnl=round(pnl, 8),
        realised_r=round(r, 6),
        mfe=round(max(mfe, 0.0), 8),
        mae=round(max(mae, 0.0), 8),
    )
