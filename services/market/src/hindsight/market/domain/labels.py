"""The Back-Labeler's outcome labels: what the playbook's models learn from.

Every ``signal.features`` with side "buy" or "sell" gets one ``SignalLabels`` per label spec
(signals with side "hold" are not labelled: the caller skips them). The labels describe
one canonical simulated trade and the price path around it; nothing here reads a bar
after the horizon or a bar that opened before the signal, except the history that sets
the ATR.

Inputs (``label_signal``):

- ``history``: bars that CLOSED at or before ``signal_ts``, oldest first. Only the last
  ``spec.bars_before_needed()`` (= ``atr_history_bars``) are read; older ones are ignored,
  so a label does not depend on how much history the caller happened to load.
- ``future``: the first bars whose OPEN time is at or after ``signal_ts``, oldest first,
  consecutive bars of the series (calendar closures such as FX weekends are simply absent).
  Only the first ``spec.bars_after_needed()`` are read.
- Fewer bars than either count: ``NotEnoughBars`` (the signal waits for its bars). Bars of
  another series, out of order, on the wrong side of the signal or with a non-finite price:
  ``ValueError`` naming the bar and field.

The canonical trade: entry at ``entry_price`` (else the last history close) at
``signal_ts``; ``A`` = Wilder ATR(``atr_period``) of the history window at its last bar
(``indicators.atr``); 1R = ``stop_katr * A``; stop at entry − 1R and target at entry +
``target_r``·R for a buy (mirrored for a sell). That ATR runs over the window alone (seeded
at its start), so it can differ a little from the stored ATR series, which runs over the
whole series: with the default 100 bars and period 14 the seed weighs (13/14)^86 ≈ 0.2%;
the price of a label that never depends on how far back the stored bars go.
A barrier is touched when a bar's low (high) reaches it, equality included. Within a bar
the order of high and low is unknown, so a bar that touches both barriers counts as the
cautious outcome: stop first.

Labels (``SignalLabels``, the ``signal.labeled`` payload), over the first ``horizon_bars``
future bars unless said otherwise:

- ``y_entry``: 1 when the target is touched in an earlier bar than the stop (or the stop
  never is), else 0.
- ``realised_r``: the canonical trade's result in R: −1 at the stop, +``target_r`` at the
  target, else the horizon's last close relative to entry.
- ``runup_r`` / ``drawdown_r``: the maximum favourable / adverse excursion from entry in R
  over the whole horizon (not stopped by an exit), each ≥ 0; ``mfe_r`` / ``mae_r`` are the
  same numbers, ``mfe_atr`` / ``mae_atr`` the same excursions in ATR units.
- ``t_hit_tp`` / ``t_hit_sl``: minutes from ``signal_ts`` to the END (close time) of the
  bar in which the price path first touched the target / the stop, each on its own (both
  can be set, whichever came first); None when not touched within the horizon. Real times:
  a ``1mo`` bar ends at the first of the next month, so its minutes follow the month's length.
- ``dd_katr``: the adverse excursion over the first ``risk_horizon_bars`` bars, in ATR
  units (the Risk model's target).
- ``best_offset_katr`` (the Entry-Offset target): for each offset ``o`` in
  ``offsets_katr`` a trade is simulated at the price entry + ``o``·A for a buy (entry −
  ``o``·A for a sell): a negative offset is a better price than the signal's (a LIMIT
  order), a positive one a worse price (a STOP entry). Offset 0 is the canonical trade.
  Another offset fills in the first of the first ``offset_fill_bars`` bars whose range
  reaches its price (low for a LIMIT, high for a STOP on a buy), at exactly that price (no
  gap slippage); unfilled, it is not a candidate. From the fill, the same 1R stop and
  ``target_r`` target around the fill price until the same horizon end; in the fill bar only
  the stop counts (the bar's other extreme may have come before the fill: cautious). The
  best offset is the one with the highest realised R; ties go to the smallest ``|o|``, then
  to the negative one (the better price); 0.0 when no offset filled.

``LabelSpec.spec_hash()`` names the spec together with ``LABEL_RULES_VERSION`` and
``INDICATOR_VERSION``: labels carry it, and a change of the spec or of these rules gives a
new hash (a relabel), never labels of two rules under one name.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from hindsight.market.domain.bars import Bar, timeframe_of
from hindsight.market.domain.indicators import INDICATOR_VERSION, atr

__all__ = [
    "LABEL_RULES_VERSION",
    "LabelError",
    "LabelSpec",
    "NotEnoughBars",
    "SignalLabels",
    "label_from_atr",
    "label_signal",
]

LABEL_RULES_VERSION = "1"

Side = Literal["buy", "sell"]


class LabelError(ValueError):
    """A signal that cannot be labelled from the bars given."""


class NotEnoughBars(LabelError):
    """Fewer history or future bars than the spec needs: the signal waits for its bars."""


@dataclass(frozen=True)
class LabelSpec:
    """How labels are computed; its ``spec_hash`` travels with every label."""

    horizon_bars: int = 6
    risk_horizon_bars: int = 4
    stop_katr: float = 1.0  # 1R = stop_katr * ATR(atr_period) at the signal
    target_r: float = 1.0
    offsets_katr: tuple[float, ...] = (-0.25, -0.15, 0.0, 0.15, 0.25)
    offset_fill_bars: int = 2
    atr_period: int = 14
    atr_history_bars: int = 100  # the history window the ATR is computed over

    def __post_init__(self) -> None:
        for name in ("horizon_bars", "risk_horizon_bars", "offset_fill_bars", "atr_period"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("atr_history_bars", self.atr_history_bars, minimum=self.atr_period)
        if self.offset_fill_bars > self.horizon_bars:
            raise ValueError(
                f"offset_fill_bars ({self.offset_fill_bars}) must be <= horizon_bars "
                f"({self.horizon_bars}): a fill after the horizon cannot trade"
            )
        for name in ("stop_katr", "target_r"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        offsets = tuple(self.offsets_katr)
        if not all(_is_number(o) and math.isfinite(o) for o in offsets):
            raise ValueError(f"offsets_katr must be finite numbers, got {offsets!r}")
        if len(set(offsets)) != len(offsets):
            raise ValueError(f"offsets_katr must be distinct, got {offsets!r}")
        object.__setattr__(self, "offsets_katr", tuple(float(o) for o in offsets))

    def canonical_json(self) -> str:
        """The spec and the rules' versions as canonical JSON (sorted keys, no spaces)."""
        body = {
            "atr_history_bars": self.atr_history_bars,
            "atr_period": self.atr_period,
            "horizon_bars": self.horizon_bars,
            "indicator_version": INDICATOR_VERSION,
            "label_rules_version": LABEL_RULES_VERSION,
            "offset_fill_bars": self.offset_fill_bars,
            "offsets_katr": list(self.offsets_katr),
            "risk_horizon_bars": self.risk_horizon_bars,
            "stop_katr": self.stop_katr,
            "target_r": self.target_r,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def spec_hash(self) -> str:
        """First 16 hex characters of the sha256 of ``canonical_json()``."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:16]

    def bars_after_needed(self) -> int:
        """How many future bars a label reads: the longest horizon."""
        return max(self.horizon_bars, self.risk_horizon_bars, self.offset_fill_bars)

    def bars_before_needed(self) -> int:
        """How many history bars a label reads (the ATR window)."""
        return self.atr_history_bars


@dataclass(frozen=True)
class SignalLabels:
    """The ``signal.labeled`` payload's label fields (see the module for each)."""

    horizon_bars: int
    runup_r: float
    drawdown_r: float
    realised_r: float
    y_entry: int
    t_hit_tp: float | None
    t_hit_sl: float | None
    mfe_atr: float
    mae_atr: float
    mfe_r: float
    mae_r: float
    dd_katr: float
    best_offset_katr: float


def label_signal(
    *,
    side: Literal["buy", "sell"],
    signal_ts: datetime,
    entry_price: float | None,
    history: Sequence[Bar],
    future: Sequence[Bar],
    spec: LabelSpec,
) -> SignalLabels:
    """The labels of one signal from the bars around it (the rules in the module)."""
    _check_side(side)
    _check_signal_ts(signal_ts)
    before, after = spec.bars_before_needed(), spec.bars_after_needed()
    if len(history) < before:
        raise NotEnoughBars(
            f"history: {len(history)} bar(s) closed by the signal, the spec needs {before}"
        )
    if len(future) < after:
        raise NotEnoughBars(
            f"future: {len(future)} bar(s) after the signal, the spec needs {after}"
        )
    first = len(history) - before
    window = history[first:]
    ahead = future[:after]
    _check_bars(window, ahead, signal_ts=signal_ts, first=first)
    a = float(
        atr(
            np.array([b.high for b in window], dtype=np.float64),
            np.array([b.low for b in window], dtype=np.float64),
            np.array([b.close for b in window], dtype=np.float64),
            spec.atr_period,
        )[-1]
    )
    entry = window[-1].close if entry_price is None else entry_price
    return label_from_atr(
        side=side, signal_ts=signal_ts, entry=entry, atr_value=a, future=ahead, spec=spec
    )


def label_from_atr(
    *,
    side: Literal["buy", "sell"],
    signal_ts: datetime,
    entry: float,
    atr_value: float,
    future: Sequence[Bar],
    spec: LabelSpec,
) -> SignalLabels:
    """The labels given the entry price and the ATR at the signal: everything
    ``label_signal`` takes from the history. Reads ``future[:spec.bars_after_needed()]``."""
    _check_side(side)
    if not _is_number(entry) or not math.isfinite(entry):
        raise ValueError(f"entry_price must be a finite number, got {entry!r}")
    if not math.isfinite(atr_value) or atr_value <= 0:
        raise LabelError(
            f"ATR at the signal must be finite and > 0, got {atr_value!r} "
            "(a flat or non-finite history?)"
        )
    after = spec.bars_after_needed()
    if len(future) < after:
        raise NotEnoughBars(
            f"future: {len(future)} bar(s) after the signal, the spec needs {after}"
        )
    path = _Path.of(future[:after], entry=entry, buy=side == "buy")
    r = spec.stop_katr * atr_value
    target = spec.target_r * r
    horizon = spec.horizon_bars
    hi, lo = path.hi[:horizon], path.lo[:horizon]
    k_tp = next((k for k, x in enumerate(hi) if x >= target), None)
    k_sl = next((k for k, x in enumerate(lo) if x <= -r), None)
    realised = _result(k_tp, k_sl, last=path.close[horizon - 1], fill=0.0, r=r, spec=spec)
    mfe = max(0.0, max(hi))
    mae = max(0.0, -min(lo))
    dd = max(0.0, -min(path.lo[: spec.risk_horizon_bars]))
    tf = timeframe_of(future[0].timeframe)
    return SignalLabels(
        horizon_bars=horizon,
        runup_r=mfe / r,
        drawdown_r=mae / r,
        realised_r=realised,
        y_entry=1 if k_tp is not None and (k_sl is None or k_tp < k_sl) else 0,
        t_hit_tp=None if k_tp is None else _minutes(tf.end(future[k_tp].ts) - signal_ts),
        t_hit_sl=None if k_sl is None else _minutes(tf.end(future[k_sl].ts) - signal_ts),
        mfe_atr=mfe / atr_value,
        mae_atr=mae / atr_value,
        mfe_r=mfe / r,
        mae_r=mae / r,
        dd_katr=dd / atr_value,
        best_offset_katr=_best_offset(path, canonical=realised, atr_value=atr_value, spec=spec),
    )


@dataclass(frozen=True, slots=True)
class _Path:
    """The future bars in side-normalised price moves from entry: ``x = ±(price − entry)``
    with + for a buy, so favourable is up for both sides (``hi`` the favourable extreme of
    each bar, ``lo`` the adverse one). Every rule below reads only these, which makes buy
    and sell mirror images by construction."""

    hi: list[float]
    lo: list[float]
    close: list[float]

    @staticmethod
    def of(bars: Sequence[Bar], *, entry: float, buy: bool) -> _Path:
        hi: list[float] = []
        lo: list[float] = []
        close: list[float] = []
        for k, b in enumerate(bars):
            if not (_finite(b.high) and _finite(b.low) and _finite(b.close)):
                name = next(n for n in ("high", "low", "close") if not _finite(getattr(b, n)))
                value = getattr(b, name)
                raise ValueError(f"future[{k}].{name} must be a finite number, got {value!r}")
            if buy:
                hi.append(b.high - entry)
                lo.append(b.low - entry)
                close.append(b.close - entry)
            else:
                hi.append(entry - b.low)
                lo.append(entry - b.high)
                close.append(entry - b.close)
        return _Path(hi=hi, lo=lo, close=close)


def _result(
    k_tp: int | None, k_sl: int | None, *, last: float, fill: float, r: float, spec: LabelSpec
) -> float:
    """A trade's result in R: stop first on a tie (same bar), else the last close."""
    if k_sl is not None and (k_tp is None or k_sl <= k_tp):
        return -1.0
    if k_tp is not None:
        return spec.target_r
    return (last - fill) / r


def _best_offset(path: _Path, *, canonical: float, atr_value: float, spec: LabelSpec) -> float:
    horizon = spec.horizon_bars
    r = spec.stop_katr * atr_value
    target = spec.target_r * r
    candidates: list[tuple[float, float]] = []  # (realised R, offset)
    for offset in spec.offsets_katr:
        if offset == 0.0:
            candidates.append((canonical, offset))
            continue
        fill = offset * atr_value
        k_fill = next(
            (
                k
                for k in range(spec.offset_fill_bars)
                if (path.lo[k] <= fill if offset < 0 else path.hi[k] >= fill)
            ),
            None,
        )
        if k_fill is None:
            continue
        stop, take = fill - r, fill + target
        k_sl = next((k for k in range(k_fill, horizon) if path.lo[k] <= stop), None)
        # In the fill bar only the stop counts: its favourable extreme may precede the fill.
        k_tp = next((k for k in range(k_fill + 1, horizon) if path.hi[k] >= take), None)
        realised = _result(k_tp, k_sl, last=path.close[horizon - 1], fill=fill, r=r, spec=spec)
        candidates.append((realised, offset))
    if not candidates:
        return 0.0
    # Highest R; then the smallest |offset|; then the better price (the negative offset).
    _, best = max(candidates, key=lambda c: (c[0], -abs(c[1]), -c[1]))
    return best


def _check_bars(
    history: Sequence[Bar], future: Sequence[Bar], *, signal_ts: datetime, first: int
) -> None:
    symbol, timeframe = future[0].symbol, future[0].timeframe
    timeframe_of(timeframe)
    bars = [*history, *future]

    def name(i: int) -> str:  # the bar's name in the caller's sequences
        return f"history[{first + i}]" if i < len(history) else f"future[{i - len(history)}]"

    previous: datetime | None = None
    for i, b in enumerate(bars):
        if b.symbol != symbol:
            raise ValueError(f"{name(i)}.symbol {b.symbol!r} is not the series' {symbol!r}")
        if b.timeframe != timeframe:
            raise ValueError(
                f"{name(i)}.timeframe {b.timeframe!r} is not the series' {timeframe!r}"
            )
        if previous is not None and b.ts <= previous:
            raise ValueError(f"{name(i)}.ts {b.ts.isoformat()} is not after {previous.isoformat()}")
        previous = b.ts
    if history[-1].end > signal_ts:
        raise ValueError(
            f"{name(len(history) - 1)} closes at {history[-1].end.isoformat()}, after the "
            f"signal at {signal_ts.isoformat()}"
        )
    if future[0].ts < signal_ts:
        raise ValueError(
            f"future[0].ts {future[0].ts.isoformat()} opens before the signal at "
            f"{signal_ts.isoformat()}"
        )


def _check_side(side: str) -> None:
    if side not in ("buy", "sell"):
        raise ValueError(
            f"side must be 'buy' or 'sell', got {side!r} ('hold' signals are not labelled)"
        )


def _check_signal_ts(signal_ts: datetime) -> None:
    if signal_ts.utcoffset() is None:
        raise ValueError(f"signal_ts must be timezone-aware, got {signal_ts.isoformat()}")


def _minutes(delta: timedelta) -> float:
    return delta.total_seconds() / 60.0


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
