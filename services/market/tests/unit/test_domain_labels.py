"""The Back-Labeler's labels on tiny hand-computed series: every field, stop first on a bar
touching both barriers, the offset grid, the inputs it refuses, and the spec's hash."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hindsight.market.domain.bars import Bar
from hindsight.market.domain.labels import (
    LabelError,
    LabelSpec,
    NotEnoughBars,
    SignalLabels,
    label_signal,
)

pytestmark = pytest.mark.unit

SIGNAL = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# ATR(2) over 3 history bars; 1R = 1 ATR, target 2R; LIMIT/STOP offsets of half an ATR.
SPEC = LabelSpec(
    horizon_bars=3,
    risk_horizon_bars=2,
    stop_katr=1.0,
    target_r=2.0,
    offsets_katr=(-0.5, 0.0, 0.5),
    offset_fill_bars=2,
    atr_period=2,
    atr_history_bars=3,
)


def bars(
    start: datetime, *ohlc: tuple[float, float, float, float], symbol: str = "EURUSD"
) -> list[Bar]:
    return [
        Bar(symbol, "1h", start + i * HOUR, open=o, high=h, low=lo, close=c, volume=1.0)
        for i, (o, h, lo, c) in enumerate(ohlc)
    ]


# Three bars of range 2 around 100: every true range is 2, so ATR(2) = 2 and entry = 100.
HISTORY = bars(SIGNAL - 3 * HOUR, (100, 101, 99, 100), (100, 101, 99, 100), (100, 101, 99, 100))


def label(
    future: Sequence[Bar],
    *,
    side: str = "buy",
    spec: LabelSpec = SPEC,
    history: Sequence[Bar] = HISTORY,
    entry_price: float | None = None,
    signal_ts: datetime = SIGNAL,
) -> SignalLabels:
    return label_signal(
        side=side,  # type: ignore[arg-type]
        signal_ts=signal_ts,
        entry_price=entry_price,
        history=history,
        future=future,
        spec=spec,
    )


# Buy: stop 98, target 104 never touched; LIMIT at 99 fills in bar 0 and reaches its 103
# target in bar 1; STOP at 101 fills in bar 0 whose low (99) is its stop.
FUTURE = bars(SIGNAL, (100, 103, 99, 102), (102, 103.5, 101, 103), (103, 103.8, 99.5, 103))


def test_buy_labels_by_hand() -> None:
    assert label(FUTURE) == SignalLabels(
        horizon_bars=3,
        runup_r=pytest.approx(1.9),  # highest high 103.8: 3.8 / R 2
        drawdown_r=0.5,  # lowest low 99
        realised_r=1.5,  # no barrier: last close 103, (103 - 100) / 2
        y_entry=0,
        t_hit_tp=None,
        t_hit_sl=None,
        mfe_atr=pytest.approx(1.9),
        mae_atr=0.5,
        mfe_r=pytest.approx(1.9),
        mae_r=0.5,
        dd_katr=0.5,  # first 2 bars: lowest low 99
        best_offset_katr=-0.5,  # LIMIT +2R beats canonical +1.5R and STOP -1R
    )


def test_sell_labels_by_hand() -> None:
    # Sell: stop 102 touched by bar 0's high 103 (ends 11:00, 60 min); target 96 never.
    assert label(FUTURE, side="sell") == SignalLabels(
        horizon_bars=3,
        runup_r=0.5,  # lowest low 99
        drawdown_r=pytest.approx(1.9),  # highest high 103.8
        realised_r=-1.0,
        y_entry=0,
        t_hit_tp=None,
        t_hit_sl=60.0,
        mfe_atr=0.5,
        mae_atr=pytest.approx(1.9),
        mfe_r=0.5,
        mae_r=pytest.approx(1.9),
        dd_katr=1.75,  # first 2 bars: highest high 103.5
        # LIMIT at 101 fills in bar 0 (high 103), stop 103 touched in the same bar: -1.
        # STOP at 99 fills in bar 0 (low 99), stop 101 touched in the same bar: -1.
        # All -1: the smallest |offset| wins.
        best_offset_katr=0.0,
    )


def test_target_then_stop_is_a_win_and_both_times_are_reported() -> None:
    future = bars(SIGNAL, (100, 104.5, 99, 104), (104, 104, 97, 97), (97, 98, 96, 96))
    got = label(future)
    assert (got.y_entry, got.realised_r) == (1, 2.0)
    assert (got.t_hit_tp, got.t_hit_sl) == (60.0, 120.0)  # ends of bars 0 and 1
    assert (got.runup_r, got.drawdown_r) == (2.25, 2.0)  # over the whole horizon


def test_a_bar_touching_both_barriers_is_stop_first() -> None:
    future = bars(SIGNAL, (100, 104.5, 97.5, 101), (101, 110, 101, 110), (110, 111, 109, 111))
    got = label(future)
    assert (got.y_entry, got.realised_r) == (0, -1.0)
    assert (got.t_hit_tp, got.t_hit_sl) == (60.0, 60.0)
    mirror = bars(SIGNAL, (100, 102.5, 95.5, 99), (99, 99, 90, 90), (90, 91, 89, 89))
    got = label(mirror, side="sell")
    assert (got.y_entry, got.realised_r) == (0, -1.0)


def test_touching_a_barrier_exactly_counts() -> None:
    future = bars(SIGNAL, (100, 104, 99, 103), (103, 103, 102, 102), (102, 102, 101, 101))
    assert label(future).y_entry == 1  # high == target 104
    future = bars(SIGNAL, (100, 101, 98, 99), (99, 104, 99, 104), (104, 105, 104, 105))
    assert label(future).realised_r == -1.0  # low == stop 98


def test_r_and_atr_units_differ_when_the_stop_is_not_one_atr() -> None:
    # 1R = 1.5 ATR = 3: stop 97, target 1R = 103 touched in bar 0.
    spec = dataclasses.replace(SPEC, stop_katr=1.5, target_r=1.0)
    got = label(FUTURE, spec=spec)
    assert (got.y_entry, got.realised_r, got.t_hit_tp) == (1, 1.0, 60.0)
    assert got.mfe_atr == pytest.approx(1.9) and got.mfe_r == pytest.approx(3.8 / 3)
    assert got.runup_r == got.mfe_r and got.drawdown_r == got.mae_r == pytest.approx(1 / 3)


def test_entry_price_overrides_the_last_close() -> None:
    got = label(FUTURE, entry_price=101.0)  # stop 99 touched in bar 0
    assert (got.realised_r, got.t_hit_sl) == (-1.0, 60.0)


def test_a_signal_between_bar_opens_counts_minutes_from_the_signal() -> None:
    signal = SIGNAL + timedelta(minutes=30)  # history closes at 10:00, future opens at 11:00
    future = bars(
        SIGNAL + HOUR, *[(100, 104.5, 99, 104), (104, 105, 103, 104), (104, 104, 103, 103)]
    )
    got = label(future, signal_ts=signal)
    assert got.t_hit_tp == 90.0  # bar 11:00-12:00 ends 90 minutes after 10:30


def test_no_offset_fills_gives_zero_and_ties_prefer_the_better_price() -> None:
    quiet = bars(SIGNAL, (100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100))
    assert (
        label(quiet, spec=dataclasses.replace(SPEC, offsets_katr=(-0.5, 0.5))).best_offset_katr
        == 0.0
    )
    # Both ±0.25 fill (LIMIT 99.5, STOP 100.5) and the horizon ends at 100: the LIMIT
    # gains 0.25R, the STOP loses 0.25R.
    spec = dataclasses.replace(SPEC, offsets_katr=(0.25, -0.25))
    assert label(quiet, spec=spec).best_offset_katr == -0.25
    # Two offsets reaching the same target: the smaller |offset| wins.
    up = bars(SIGNAL, (100, 101, 99, 101), (101, 110, 101, 110), (110, 111, 109, 111))
    spec = dataclasses.replace(SPEC, offsets_katr=(-0.5, -0.25, 0.25))
    assert label(up, spec=spec).best_offset_katr == -0.25
    # ±0.25 both fill in bar 0 (low 99, high 101) and both reach +2R in bar 1: equal R and
    # equal |offset|, so the better price (the LIMIT) wins, whatever the order given.
    spec = dataclasses.replace(SPEC, offsets_katr=(0.25, -0.25))
    assert label(up, spec=spec).best_offset_katr == -0.25


def test_offset_fill_window_and_fill_bar_rules() -> None:
    # LIMIT at 99 is only reached in bar 2, after the 2-bar fill window: not filled.
    late = bars(SIGNAL, (100, 100.5, 99.5, 100), (100, 100.5, 99.5, 100), (100, 100, 90, 90))
    spec = dataclasses.replace(SPEC, offsets_katr=(-0.5,))
    assert label(late, spec=spec).best_offset_katr == 0.0
    # STOP at 101 fills in bar 0 whose high 110 is beyond its target 105: the fill bar's
    # target does not count; bar 1 takes it.
    spec = dataclasses.replace(SPEC, offsets_katr=(0.5, 0.25), horizon_bars=2, offset_fill_bars=1)
    surge = bars(SIGNAL, (100, 110, 100, 110), (110, 110, 108, 108))
    # +0.5: fill 101, target 105, no target in bar 0, bar 1 high 110 -> +2R.
    # +0.25: fill 100.5, target 104.5, bar 1 -> +2R; tie -> smaller |offset|.
    assert label(surge, spec=spec).best_offset_katr == 0.25
    flat_after = bars(SIGNAL, (100, 110, 100, 110), (104, 104, 104, 104))
    # +0.5: (104 - 101) / 2 = 1.5R; +0.25: (104 - 100.5) / 2 = 1.75R.
    assert label(flat_after, spec=spec).best_offset_katr == 0.25


def test_history_older_than_the_atr_window_is_not_read() -> None:
    older = bars(SIGNAL - 5 * HOUR, (1, 500, 1, 250), (250, 250, 250, 250))
    assert label(FUTURE, history=older + HISTORY) == label(FUTURE)


def test_short_history_or_future_waits() -> None:
    with pytest.raises(NotEnoughBars, match="history: 2 bar"):
        label(FUTURE, history=HISTORY[1:])
    with pytest.raises(NotEnoughBars, match="future: 2 bar"):
        label(FUTURE[:2])
    assert issubclass(NotEnoughBars, ValueError)


def test_bad_inputs_name_the_bar_and_field() -> None:
    with pytest.raises(ValueError, match="'hold' signals are not labelled"):
        label(FUTURE, side="hold")
    with pytest.raises(ValueError, match=r"future\[0\]\.ts .* before the signal"):
        label(FUTURE, signal_ts=SIGNAL + timedelta(minutes=1), history=HISTORY)
    with pytest.raises(ValueError, match=r"history\[2\] closes at .* after the signal"):
        label(FUTURE, signal_ts=SIGNAL - timedelta(minutes=1))
    with pytest.raises(ValueError, match=r"future\[1\]\.symbol 'GOOG'"):
        label([FUTURE[0], dataclasses.replace(FUTURE[1], symbol="GOOG"), FUTURE[2]])
    with pytest.raises(ValueError, match=r"history\[0\]\.timeframe '4h'"):
        label(FUTURE, history=[dataclasses.replace(HISTORY[0], timeframe="4h"), *HISTORY[1:]])
    with pytest.raises(ValueError, match=r"future\[2\]\.ts .* is not after"):
        label([FUTURE[0], FUTURE[2], FUTURE[1]])
    with pytest.raises(ValueError, match=r"future\[1\]\.low must be a finite"):
        label([FUTURE[0], dataclasses.replace(FUTURE[1], low=math.nan), FUTURE[2]])
    with pytest.raises(ValueError, match="entry_price must be a finite"):
        label(FUTURE, entry_price=math.inf)
    with pytest.raises(ValueError, match="timezone-aware"):
        label(FUTURE, signal_ts=SIGNAL.replace(tzinfo=None))
    flat = bars(SIGNAL - 3 * HOUR, *[(100, 100, 100, 100)] * 3)
    with pytest.raises(LabelError, match="ATR at the signal must be finite and > 0"):
        label(FUTURE, history=flat)


def test_spec_defaults_needs_and_validation() -> None:
    spec = LabelSpec()
    assert (spec.horizon_bars, spec.risk_horizon_bars, spec.stop_katr, spec.target_r) == (
        6,
        4,
        1.0,
        1.0,
    )
    assert spec.offsets_katr == (-0.25, -0.15, 0.0, 0.15, 0.25)
    assert spec.atr_period == 14
    assert spec.bars_after_needed() == 6
    assert LabelSpec(risk_horizon_bars=10).bars_after_needed() == 10
    assert spec.bars_before_needed() == spec.atr_history_bars
    for bad, field in [
        ({"horizon_bars": 0}, "horizon_bars"),
        ({"stop_katr": 0.0}, "stop_katr"),
        ({"target_r": math.nan}, "target_r"),
        ({"offsets_katr": (0.1, 0.1)}, "offsets_katr"),
        ({"offset_fill_bars": 7}, "offset_fill_bars"),
        ({"atr_history_bars": 13}, "atr_history_bars"),
    ]:
        with pytest.raises(ValueError, match=field):
            LabelSpec(**bad)  # type: ignore[arg-type]


def test_spec_hash_is_canonical_and_pinned() -> None:
    spec = LabelSpec()
    assert spec.spec_hash() == LabelSpec(stop_katr=1, target_r=1).spec_hash()  # ints == floats
    assert spec.spec_hash() != LabelSpec(horizon_bars=12).spec_hash()
    assert len(spec.spec_hash()) == 16 and int(spec.spec_hash(), 16) >= 0
    assert json.loads(spec.canonical_json())["label_rules_version"]
    # Pinned: a change of this value means every stored label changes name. Update it only
    # together with a deliberate change of the spec's defaults or LABEL_RULES_VERSION.
    assert spec.spec_hash() == "fbf2a97422685b6f"


def test_spec_hash_is_the_same_in_another_process() -> None:
    code = "from hindsight.market.domain.labels import LabelSpec; print(LabelSpec().spec_hash())"
    src = Path(__file__).parents[2] / "src"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(src), "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == LabelSpec().spec_hash()
