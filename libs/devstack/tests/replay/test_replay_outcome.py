"""Trade simulation: stop, target, time exit, gaps, excursions, R."""

from __future__ import annotations

import numpy as np
import pytest

from hindsight.devstack.replay.outcome import simulate_trade

pytestmark = pytest.mark.unit


def _run(bars: list[tuple[float, float, float, float]], *, side: str = "buy", max_hold: int = 10):
    # bar 0 is the signal bar; entry 100, stop 98, target 104 for a buy (mirrored for a sell)
    o, h, lo, c = (np.array(col, dtype=float) for col in zip(*bars, strict=True))
    sl, tp = (98.0, 104.0) if side == "buy" else (102.0, 96.0)
    return simulate_trade(
        open_=o,
        high=h,
        low=lo,
        close=c,
        bar=0,
        side=side,
        entry=100.0,
        sl=sl,
        tp=tp,
        max_hold=max_hold,
    )


SIGNAL = (99.0, 100.5, 98.9, 100.0)


def test_target_hit_with_excursions() -> None:
    out = _run([SIGNAL, (100, 101, 99, 100.5), (100.5, 104.5, 100, 104)])
    assert (out.reason, out.result, out.exit_bar, out.exit_price) == ("target", "win", 2, 104.0)
    assert out.realised_r == pytest.approx(2.0) and out.pnl == pytest.approx(4.0)
    assert out.mfe == pytest.approx(4.0) and out.mae == pytest.approx(1.0)


def test_stop_hit_and_both_in_one_bar_is_a_stop() -> None:
    out = _run([SIGNAL, (100, 102, 99.5, 101), (101, 105, 97, 100)])
    assert (out.reason, out.result, out.exit_price) == ("stop", "loss", 98.0)
    assert out.realised_r == pytest.approx(-1.0) and out.mae == pytest.approx(2.0)
    assert out.mfe == pytest.approx(5.0)  # the bar's high may have come first


def test_gap_through_the_stop_fills_at_the_open() -> None:
    out = _run([SIGNAL, (97, 97.5, 96, 96.5)])
    assert out.exit_price == 97.0 and out.realised_r == pytest.approx(-1.5)


def test_sell_target_and_time_exit() -> None:
    out = _run([SIGNAL, (100, 100.5, 95.5, 96)], side="sell")
    assert (out.reason, out.result, out.exit_price) == ("target", "win", 96.0)
    assert out.pnl == pytest.approx(4.0)
    flat = [SIGNAL] + [(100, 100.6, 99.6, 100.05)] * 6
    out = _run(flat, max_hold=3)
    assert (out.reason, out.exit_bar, out.result) == ("time", 3, "breakeven")
    assert out.mfe == pytest.approx(0.6) and out.mae == pytest.approx(0.4)


def test_end_of_data_exit_and_bad_input() -> None:
    out = _run([SIGNAL, (100, 101, 99.5, 100.9), (100.9, 101.5, 100.5, 101.2)], max_hold=10)
    assert (out.reason, out.exit_bar, out.exit_price) == ("end_of_data", 2, 101.2)
    assert out.result == "win" and out.realised_r == pytest.approx(0.6)
    with pytest.raises(ValueError):
        _run([SIGNAL])
