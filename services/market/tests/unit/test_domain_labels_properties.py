"""Properties of the Back-Labeler's labels (hypothesis):

- no label reads a bar after the horizon or before the signal: a guard sequence fails on
  any such read; changing or adding future bars past ``bars_after_needed()`` changes
  nothing; history reaches the labels only through the ATR and the entry (bars older than
  the ATR window, opens, volumes and a price shift of the whole window with a given entry
  change nothing);
- buy and sell are mirror images (p -> 2c - p, high and low swapped, side flipped);
- determinism: the same bars, also after a pickle or JSON round trip, give the same labels;
- agreement with a straightforward reference written here (a trade as a state machine over
  the bars, in prices) and the labels' own invariants.

Prices are whole numbers (held as floats), so that reflection and shifting are exact and
equality with a barrier happens often enough to be exercised.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, overload

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hindsight.market.domain.bars import Bar
from hindsight.market.domain.indicators import atr
from hindsight.market.domain.labels import LabelSpec, SignalLabels, label_from_atr, label_signal

pytestmark = pytest.mark.unit

SIGNAL = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
CENTRE = 200.0  # reflection centre: prices in [40, 160] reflect into [240, 360]
Side = Literal["buy", "sell"]


@dataclass(frozen=True)
class Case:
    side: Side
    entry_price: float | None
    history: list[Bar]
    future: list[Bar]
    spec: LabelSpec

    def labels(self, **changes: object) -> SignalLabels:
        args: dict[str, object] = {
            "side": self.side,
            "signal_ts": SIGNAL,
            "entry_price": self.entry_price,
            "history": self.history,
            "future": self.future,
            "spec": self.spec,
        }
        args.update(changes)
        return label_signal(**args)  # type: ignore[arg-type]


@st.composite
def specs(draw: st.DrawFn) -> LabelSpec:
    horizon = draw(st.integers(1, 6))
    period = draw(st.integers(1, 4))
    offsets = draw(
        st.lists(st.sampled_from([-0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5]), unique=True)
    )
    return LabelSpec(
        horizon_bars=horizon,
        risk_horizon_bars=draw(st.integers(1, 8)),
        stop_katr=draw(st.sampled_from([0.5, 1.0, 1.5, 2.0])),
        target_r=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])),
        offsets_katr=tuple(offsets),
        offset_fill_bars=draw(st.integers(1, horizon)),
        atr_period=period,
        atr_history_bars=period + draw(st.integers(0, 3)),
    )


@st.composite
def bar_run(draw: st.DrawFn, start: datetime, n: int, *, min_span: int = 0) -> list[Bar]:
    out = []
    for i in range(n):
        low = draw(st.integers(40, 140))
        high = low + draw(st.integers(min_span, 20))
        o, c = draw(st.integers(low, high)), draw(st.integers(low, high))
        volume = draw(st.integers(0, 1000))
        out.append(Bar("BTCUSD", "1h", start + i * HOUR, o, high, low, c, volume))
    return out


@st.composite
def cases(draw: st.DrawFn) -> Case:
    spec = draw(specs())
    n_hist = spec.bars_before_needed() + draw(st.integers(0, 3))
    n_fut = spec.bars_after_needed() + draw(st.integers(0, 3))
    return Case(
        side=draw(st.sampled_from(["buy", "sell"])),
        entry_price=draw(st.none() | st.integers(40, 160).map(float)),
        # Every history bar has a range, so the ATR is > 0.
        history=draw(bar_run(SIGNAL - n_hist * HOUR, n_hist, min_span=1)),
        future=draw(bar_run(SIGNAL, n_fut)),
        spec=spec,
    )


class Guarded(Sequence[Bar]):
    """A sequence that fails the test on a read outside ``[lo, hi)``."""

    def __init__(self, bars: list[Bar], *, lo: int, hi: int, name: str) -> None:
        self.bars, self.lo, self.hi, self.name = bars, lo, hi, name

    def __len__(self) -> int:
        return len(self.bars)

    @overload
    def __getitem__(self, index: int) -> Bar: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Bar]: ...
    def __getitem__(self, index: int | slice) -> Bar | Sequence[Bar]:
        if isinstance(index, slice):
            indices = range(*index.indices(len(self.bars)))
        else:
            indices = range(index % len(self.bars), index % len(self.bars) + 1)
        for i in indices:
            assert self.lo <= i < self.hi, f"read {self.name}[{i}] outside [{self.lo}, {self.hi})"
        return self.bars[index]

    def __iter__(self) -> Iterator[Bar]:
        raise AssertionError(f"iterated over all of {self.name}")


# --- reading only what the spec declares -----------------------------------------------


@settings(max_examples=200, deadline=None)
@given(cases())
def test_reads_no_bar_after_the_horizon_or_before_the_atr_window(case: Case) -> None:
    n_hist = len(case.history)
    history = Guarded(
        case.history, lo=n_hist - case.spec.bars_before_needed(), hi=n_hist, name="history"
    )
    future = Guarded(case.future, lo=0, hi=case.spec.bars_after_needed(), name="future")
    assert case.labels(history=history, future=future) == case.labels()


@settings(max_examples=200, deadline=None)
@given(cases(), st.data())
def test_future_bars_past_the_horizon_change_nothing(case: Case, data: st.DataObject) -> None:
    needed = case.spec.bars_after_needed()
    extra = data.draw(st.integers(0, 5))
    later = data.draw(bar_run(SIGNAL + needed * HOUR, extra))
    assert case.labels(future=case.future[:needed] + later) == case.labels()


@settings(max_examples=200, deadline=None)
@given(cases(), st.data())
def test_history_reaches_the_labels_only_through_atr_and_entry(
    case: Case, data: st.DataObject
) -> None:
    spec = case.spec
    window = case.history[-spec.bars_before_needed() :]
    # Bars older than the ATR window: anything.
    n_old = data.draw(st.integers(0, 4))
    old = data.draw(bar_run(window[0].ts - n_old * HOUR, n_old, min_span=1))
    assert case.labels(history=old + window) == case.labels()
    # Opens and volumes: never read.
    reopened = [
        dataclasses.replace(b, open=data.draw(st.integers(int(b.low), int(b.high))), volume=7.0)
        for b in case.history
    ]
    assert case.labels(history=reopened) == case.labels()
    # The labels are a function of (entry, ATR, future) alone.
    a = float(
        atr(
            np.array([b.high for b in window]),
            np.array([b.low for b in window]),
            np.array([b.close for b in window]),
            spec.atr_period,
        )[-1]
    )
    entry = window[-1].close if case.entry_price is None else case.entry_price
    by_atr = label_from_atr(
        side=case.side, signal_ts=SIGNAL, entry=entry, atr_value=a, future=case.future, spec=spec
    )
    assert case.labels() == by_atr
    # Shifting every history price leaves the ATR equal: with a given entry, nothing changes.
    if case.entry_price is not None:
        shift = float(data.draw(st.integers(-30, 30)))
        shifted = [
            dataclasses.replace(
                b,
                open=b.open + shift,
                high=b.high + shift,
                low=b.low + shift,
                close=b.close + shift,
            )
            for b in case.history
        ]
        assert case.labels(history=shifted) == case.labels()


# --- symmetry and determinism --------------------------------------------------------------


def reflect(bar: Bar) -> Bar:
    return dataclasses.replace(
        bar,
        open=2 * CENTRE - bar.open,
        high=2 * CENTRE - bar.low,
        low=2 * CENTRE - bar.high,
        close=2 * CENTRE - bar.close,
    )


@settings(max_examples=200, deadline=None)
@given(cases())
def test_buy_and_sell_are_mirror_images(case: Case) -> None:
    mirrored = case.labels(
        side="sell" if case.side == "buy" else "buy",
        entry_price=None if case.entry_price is None else 2 * CENTRE - case.entry_price,
        history=[reflect(b) for b in case.history],
        future=[reflect(b) for b in case.future],
    )
    assert mirrored == case.labels()


def bar_to_json(bar: Bar) -> dict[str, object]:
    return {**dataclasses.asdict(bar), "ts": bar.ts.isoformat()}


def bar_from_json(raw: dict[str, object]) -> Bar:
    return Bar(**{**raw, "ts": datetime.fromisoformat(str(raw["ts"]))})  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(cases())
def test_same_bars_same_labels_after_a_round_trip(case: Case) -> None:
    first = case.labels()
    assert case.labels() == first
    thawed = pickle.loads(pickle.dumps((case.history, case.future)))
    assert case.labels(history=thawed[0], future=thawed[1]) == first
    text = json.dumps(
        [[bar_to_json(b) for b in case.history], [bar_to_json(b) for b in case.future]]
    )
    history, future = ([bar_from_json(raw) for raw in part] for part in json.loads(text))
    assert case.labels(history=history, future=future) == first
    assert pickle.loads(pickle.dumps(first)) == first


# --- a reference implementation and invariants ---------------------------------------------


def reference_trade(
    bars: Sequence[Bar], *, buy: bool, entry: float, offset_price: float, r: float, spec: LabelSpec
) -> float | None:
    """One simulated trade as a state machine over the bars, as the module documents it.
    ``offset_price`` is the order's distance from entry, + being the worse price."""
    s = 1.0 if buy else -1.0

    def favourable(b: Bar) -> float:  # best move of the bar for the side, from entry
        return s * ((b.high if buy else b.low) - entry)

    def adverse(b: Bar) -> float:
        return s * ((b.low if buy else b.high) - entry)

    state = "open" if offset_price == 0 else "waiting"
    for k, b in enumerate(bars[: spec.horizon_bars]):
        if state == "waiting":
            if k >= spec.offset_fill_bars:
                return None
            limit = offset_price < 0
            if not (adverse(b) <= offset_price if limit else favourable(b) >= offset_price):
                continue
            state = "open"
            if adverse(b) <= offset_price - r:  # in the fill bar only the stop counts
                return -1.0
            continue
        if adverse(b) <= offset_price - r:
            return -1.0
        if favourable(b) >= offset_price + spec.target_r * r:
            return spec.target_r
    if state == "waiting":
        return None
    last = bars[spec.horizon_bars - 1].close
    return (s * (last - entry) - offset_price) / r


@settings(max_examples=300, deadline=None)
@given(cases())
def test_labels_agree_with_the_reference(case: Case) -> None:
    spec = case.spec
    got = case.labels()
    window = case.history[-spec.bars_before_needed() :]
    a = float(
        atr(
            np.array([b.high for b in window]),
            np.array([b.low for b in window]),
            np.array([b.close for b in window]),
            spec.atr_period,
        )[-1]
    )
    buy = case.side == "buy"
    entry = window[-1].close if case.entry_price is None else case.entry_price
    r = spec.stop_katr * a
    horizon = case.future[: spec.horizon_bars]
    fav = [(b.high - entry) if buy else (entry - b.low) for b in horizon]
    adv = [(entry - b.low) if buy else (b.high - entry) for b in horizon]
    t_tp = next((60.0 * (k + 1) for k, x in enumerate(fav) if x >= spec.target_r * r), None)
    t_sl = next((60.0 * (k + 1) for k, x in enumerate(adv) if x >= r), None)
    realised = reference_trade(case.future, buy=buy, entry=entry, offset_price=0.0, r=r, spec=spec)
    filled = []
    for offset in spec.offsets_katr:
        result = reference_trade(
            case.future, buy=buy, entry=entry, offset_price=offset * a, r=r, spec=spec
        )
        if result is not None:
            filled.append((-result, abs(offset), offset))
    dd = max(
        0.0,
        *(
            (entry - b.low) if buy else (b.high - entry)
            for b in case.future[: spec.risk_horizon_bars]
        ),
    )
    assert got == SignalLabels(
        horizon_bars=spec.horizon_bars,
        runup_r=max(0.0, *fav) / r,
        drawdown_r=max(0.0, *adv) / r,
        realised_r=realised,  # type: ignore[arg-type]
        y_entry=int(t_tp is not None and (t_sl is None or t_tp < t_sl)),
        t_hit_tp=t_tp,
        t_hit_sl=t_sl,
        mfe_atr=max(0.0, *fav) / a,
        mae_atr=max(0.0, *adv) / a,
        mfe_r=max(0.0, *fav) / r,
        mae_r=max(0.0, *adv) / r,
        dd_katr=dd / a,
        best_offset_katr=min(filled)[2] if filled else 0.0,
    )


@settings(max_examples=200, deadline=None)
@given(cases())
def test_label_invariants(case: Case) -> None:
    got = case.labels()
    spec = case.spec
    assert -1.0 <= got.realised_r <= spec.target_r
    assert min(got.runup_r, got.drawdown_r, got.mfe_atr, got.mae_atr, got.dd_katr) >= 0
    assert (got.mfe_r, got.mae_r) == (got.runup_r, got.drawdown_r)
    assert got.best_offset_katr in (*spec.offsets_katr, 0.0)
    if got.y_entry:
        assert got.realised_r == spec.target_r and got.t_hit_tp is not None
        assert got.t_hit_sl is None or got.t_hit_tp < got.t_hit_sl
    if got.t_hit_sl is None:
        assert got.realised_r > -1.0  # -1R only through a stop touch
    for t in (got.t_hit_tp, got.t_hit_sl):
        assert t is None or t in [60.0 * (k + 1) for k in range(spec.horizon_bars)]
