"""The plan is deterministic, charts are valid PNGs, the suggestion is a named stand-in."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image

from hindsight.devstack.replay.chart import CHART_SIZE, render_chart
from hindsight.devstack.replay.data import load_bars
from hindsight.devstack.replay.features import FEATURE_NAMES
from hindsight.devstack.replay.plan import default_run_id, plan_trades, signal_id_for, trade_id_for
from hindsight.devstack.replay.settings import ReplaySettings
from hindsight.devstack.replay.suggestion import SUGGESTION_MODEL, suggest

pytestmark = pytest.mark.unit


def test_ids_are_deterministic() -> None:
    ts = datetime(2017, 5, 1, 13, tzinfo=UTC)
    sid = signal_id_for("replay-eurusd-r1", "EURUSD", ts, "breakout")
    assert sid == "replay-eurusd-r1:EURUSD:2017-05-01T13:00:00Z:breakout"
    assert trade_id_for(sid, "EURUSD", ts) == trade_id_for(sid, "EURUSD", ts)
    assert trade_id_for(sid, "EURUSD", ts).startswith("eurusd-20170501T1300-")
    assert default_run_id(["eurusd"]) == "replay-eurusd-r1"
    assert default_run_id(["synthetic"], seed=3) == "replay-synthetic-s3-r1"
    assert ReplaySettings(data="goog,eurusd").effective_run_id == "replay-goog-eurusd-r1"


def test_plan_is_deterministic_and_consistent() -> None:
    bars = load_bars("goog")
    a = plan_trades(bars, run_id="r")
    b = plan_trades(bars, run_id="r")
    assert len(a) > 50 and a == b
    assert len({t.signal_id for t in a}) == len(a) == len({t.trade_id for t in a})
    for trade in a:
        assert tuple(trade.features) == FEATURE_NAMES
        assert trade.outcome.exit_bar > trade.bar and trade.closed_at > trade.ts
        # The features read bar t's close: the signal's event time is that bar's close, and
        # the outcome is known once its exit bar has closed (no event time before its data).
        assert trade.ts == bars.time(trade.bar) + timedelta(days=1)
        assert trade.closed_at == bars.time(trade.outcome.exit_bar) + timedelta(days=1)
        sign = 1 if trade.setup.side == "buy" else -1
        assert (
            (trade.setup.tp - trade.setup.entry) * sign
            > 0
            > (trade.setup.sl - trade.setup.entry) * sign
        )
    # one open trade per setup and side
    for kind in {(t.setup.setup, t.setup.side) for t in a}:
        mine = [t for t in a if (t.setup.setup, t.setup.side) == kind]
        assert all(x.outcome.exit_bar <= y.bar for x, y in zip(mine, mine[1:], strict=False))


def test_chart_is_a_png_of_the_expected_size_and_ignores_the_future() -> None:
    bars = load_bars("eurusd")
    original = render_chart(bars, 500)
    annotated = render_chart(bars, 500, annotate=True, side="buy", entry=1.09, sl=1.08, tp=1.1)
    for data in (original, annotated):
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.size == CHART_SIZE
    assert original != annotated
    frame = bars.frame.copy()
    frame.iloc[501:] = frame.iloc[501:] * 1.5
    assert render_chart(bars.with_frame(frame), 500) == original


def test_suggestion_is_a_named_stand_in() -> None:
    trade = plan_trades(load_bars("goog"), run_id="r")[0]
    payload = suggest(
        trade_id=trade.trade_id,
        side=trade.setup.side,
        setup=trade.setup.setup,
        features=trade.features,
    )
    assert payload["model"] == SUGGESTION_MODEL == "rule-based-stand-in/1"
    assert payload["label"] in {"approved", "rejected", "review"}
    assert payload["quality_grade"] in {"A", "B", "C", "D"} and 0 <= payload["confidence"] <= 1
    assert "not an LLM" in payload["comment"]
