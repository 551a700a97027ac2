"""Trading metrics of the trades a model would take, and the PROMOTE / MONITOR / REJECT rule.

Definitions (README "Trading metrics" repeats them):

* trades taken: test-block signals whose calibrated ``p_success >= threshold``;
* R per trade: ``realised_r`` when the outcome has it, else +1 / -1 / 0 (win/loss/breakeven);
* win rate: wins / trades; average and total R; profit factor: sum of positive R over
  |sum of negative R| (None when there is no losing trade);
* Sharpe: per trade ``mean(R) / std(R, ddof=1)``; the gate uses it annualised by the
  trade frequency, ``per_trade * sqrt(trades per year)`` with trades per year = trades /
  (test-block span in years, at least one day);
* max drawdown: on the equity curve ``1 + risk_per_trade * cumulative R`` (fixed
  fractional risk of 1 % of the starting equity per trade, no compounding), the largest
  fall from a running peak as a fraction of that peak; also reported in R.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hindsight.trainer.domain.jsonsafe import JsonObject

__all__ = ["Gates", "recommend", "trading_metrics"]

FloatArray = npt.NDArray[np.float64]
_YEAR_S = 365.25 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Gates:
    """Recommendation defaults from the old self-learning spec."""

    threshold: float = 0.55
    min_sharpe: float = 1.0
    min_win_rate: float = 0.55
    max_drawdown: float = 0.20
    min_trades: int = 30
    min_improvement: float = 0.05
    risk_per_trade: float = 0.01


def trading_metrics(
    p: FloatArray,
    r: FloatArray,
    *,
    span_s: float,
    threshold: float = 0.55,
    risk_per_trade: float = 0.01,
) -> JsonObject:
    """Metrics of the trades whose ``p >= threshold``, in time order (``r`` is R per trade)."""
    taken = np.asarray(r, dtype=np.float64)[np.asarray(p) >= threshold]
    n = len(taken)
    out: JsonObject = {"threshold": threshold, "trades": n}
    if n == 0:
        out.update(
            win_rate=0.0,
            avg_r=0.0,
            total_r=0.0,
            profit_factor=None,
            sharpe_per_trade=0.0,
            sharpe=0.0,
            max_drawdown=0.0,
            max_drawdown_r=0.0,
            trades_per_year=0.0,
            risk_per_trade=risk_per_trade,
        )
        return out
    gains = float(np.sum(taken[taken > 0]))
    losses = float(-np.sum(taken[taken < 0]))
    std = float(np.std(taken, ddof=1)) if n > 1 else 0.0
    per_trade = float(np.mean(taken)) / std if std > 0 else 0.0
    per_year = n / max(span_s, 86400.0) * _YEAR_S
    cum = np.cumsum(taken)
    equity = 1.0 + risk_per_trade * np.r_[0.0, cum]
    peak = np.maximum.accumulate(equity)
    drawdown = float(np.max((peak - equity) / peak))
    cum_r = np.r_[0.0, cum]
    out.update(
        win_rate=float(np.mean(taken > 0)),
        avg_r=float(np.mean(taken)),
        total_r=float(np.sum(taken)),
        profit_factor=(gains / losses) if losses > 0 else None,
        sharpe_per_trade=per_trade,
        sharpe=per_trade * math.sqrt(per_year),
        trades_per_year=per_year,
        max_drawdown=drawdown,
        max_drawdown_r=float(np.max(np.maximum.accumulate(cum_r) - cum_r)),
        risk_per_trade=risk_per_trade,
    )
    return out


def recommend(candidate: JsonObject, production: JsonObject | None, gates: Gates) -> JsonObject:
    """PROMOTE / MONITOR / REJECT from the candidate's (and production's) trading metrics.

    REJECT when any floor fails (trades, win rate, Sharpe, drawdown). With the floors
    passed: PROMOTE when there is no production model, or when the candidate's Sharpe is
    at least ``min_improvement`` (relative, against |production Sharpe|) above
    production's on the same test block; otherwise MONITOR (also when a production model
    exists but could not be evaluated).
    """
    reasons: list[str] = []
    if candidate["trades"] < gates.min_trades:
        reasons.append(f"trades {candidate['trades']} < {gates.min_trades}")
    if candidate["win_rate"] < gates.min_win_rate:
        reasons.append(f"win rate {candidate['win_rate']:.3f} < {gates.min_win_rate}")
    if candidate["sharpe"] < gates.min_sharpe:
        reasons.append(f"sharpe {candidate['sharpe']:.3f} < {gates.min_sharpe}")
    if candidate["max_drawdown"] > gates.max_drawdown:
        reasons.append(f"max drawdown {candidate['max_drawdown']:.3f} > {gates.max_drawdown}")
    if reasons:
        return {"decision": "REJECT", "reasons": reasons, "improvement": None}
    if production is None:
        return {
            "decision": "PROMOTE",
            "reasons": ["floors passed; no production model"],
            "improvement": None,
        }
    if production.get("unavailable"):
        return {
            "decision": "MONITOR",
            "improvement": None,
            "reasons": [f"floors passed; production not comparable: {production['unavailable']}"],
        }
    base = float(production["sharpe"])
    improvement = (candidate["sharpe"] - base) / max(abs(base), 1e-9)
    if improvement >= gates.min_improvement:
        return {
            "decision": "PROMOTE",
            "improvement": improvement,
            "reasons": [f"sharpe {improvement:+.1%} vs production"],
        }
    return {
        "decision": "MONITOR",
        "improvement": improvement,
        "reasons": [
            f"floors passed; sharpe {improvement:+.1%} vs production < {gates.min_improvement:.0%}"
        ],
    }
