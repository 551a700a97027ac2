"""Deriving a trade's result from its prices when the outcome event does not carry one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from hindsight.common.errors import InvalidInputError

__all__ = ["DEFAULT_THRESHOLD", "Result", "derive_result", "resolve_result", "threshold_for"]

Result = Literal["win", "loss", "breakeven"]
DEFAULT_THRESHOLD = 0.005


def threshold_for(
    timeframe: str, thresholds: Mapping[str, float], default: float = DEFAULT_THRESHOLD
) -> float:
    """The breakeven band (a fraction of the entry price) for ``timeframe``."""
    return float(thresholds.get(timeframe, default))


def derive_result(side: str, entry: float, exit_: float, threshold: float) -> Result:
    """``win`` / ``loss`` / ``breakeven`` of a trade from its prices.

    A buy wins when ``exit > entry * (1 + t)``, loses when ``exit < entry * (1 - t)``,
    is breakeven in between; a sell mirrors it.
    """
    if side not in ("buy", "sell"):
        raise InvalidInputError(f"cannot derive a result for side {side!r}", field="side")
    for name, value in (("entry_price", entry), ("exit_price", exit_)):
        if not math.isfinite(value) or value <= 0:
            raise InvalidInputError("must be a finite price > 0", field=name)
    if threshold < 0:
        raise InvalidInputError("threshold must be >= 0", field="threshold")
    up = exit_ > entry * (1.0 + threshold)
    down = exit_ < entry * (1.0 - threshold)
    if side == "buy":
        return "win" if up else "loss" if down else "breakeven"
    return "win" if down else "loss" if up else "breakeven"


@dataclass(frozen=True, slots=True)
class ResolvedResult:
    """The result of an outcome and whether it was derived from prices."""

    result: Result | None
    derived: bool


def resolve_result(
    *,
    result: str | None,
    side: str | None,
    outcome_entry: float | None,
    signal_entry: float | None,
    exit_price: float | None,
    threshold: float,
) -> ResolvedResult:
    """The outcome's result: given, derived from prices, or ``None`` while the signal is unknown.

    ``side is None`` means the signal has not arrived yet: the result stays pending unless
    it is given. An outcome that can never be derived raises InvalidInputError naming
    the missing field.
    """
    if result is not None:
        return ResolvedResult(result, derived=False)  # type: ignore[arg-type]
    if exit_price is None:
        raise InvalidInputError("required when result is absent", field="exit_price")
    if side is None:
        return ResolvedResult(None, derived=False)
    entry = outcome_entry if outcome_entry is not None else signal_entry
    if entry is None:
        raise InvalidInputError(
            "required (on the outcome or its signal) when result is absent", field="entry_price"
        )
    return ResolvedResult(derive_result(side, entry, exit_price, threshold), derived=True)
