"""Bars, timeframes, the integrity gate (one failing bar per rule, naming its field), the
gap report and the calendar heuristic."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hindsight.market.domain.bars import TIMEFRAMES, Bar, timeframe_delta
from hindsight.market.domain.integrity import (
    Gap,
    Violation,
    calendar_for,
    check_bar,
    find_gaps,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
GOOD = Bar("BTCUSD", "1h", T0, open=100.0, high=105.0, low=99.0, close=104.0, volume=12.5)


def fields(violations: list[Violation]) -> list[str]:
    return [v.field for v in violations]


def test_timeframes_and_their_lengths() -> None:
    assert list(TIMEFRAMES) == ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1mo"]
    assert timeframe_delta("4h") == timedelta(hours=4)
    with pytest.raises(ValueError, match="'2h'"):
        timeframe_delta("2h")
    with pytest.raises(ValueError, match="'1mo' follows the calendar"):
        timeframe_delta("1mo")


def test_bar_end_and_round_trips() -> None:
    assert GOOD.end == T0 + timedelta(hours=1)
    assert pickle.loads(pickle.dumps(GOOD)) == GOOD


def test_a_good_bar_passes_with_and_without_a_previous_bar() -> None:
    assert check_bar(GOOD, previous=None) == []
    previous = replace(GOOD, ts=T0 - timedelta(hours=3))  # a gap is not an integrity failure
    assert check_bar(GOOD, previous=previous) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"high": 98.0}, "high"),  # high < low
        ({"open": 98.5}, "open"),  # open below low
        ({"open": 105.5}, "open"),  # open above high
        ({"close": 98.0}, "close"),
        ({"close": 106.0}, "close"),
        ({"volume": -1.0}, "volume"),
        ({"open": math.nan}, "open"),
        ({"high": math.inf}, "high"),
        ({"low": -math.inf}, "low"),
        ({"close": math.nan}, "close"),
        ({"volume": math.nan}, "volume"),
        ({"timeframe": "2h"}, "timeframe"),
        ({"symbol": ""}, "symbol"),
        ({"ts": T0 + timedelta(minutes=1)}, "ts"),  # not on the 1h grid
        ({"ts": T0.replace(tzinfo=None)}, "ts"),  # naive
        ({"ts": T0.astimezone(timezone(timedelta(hours=2)))}, "ts"),  # not UTC
    ],
)
def test_each_rule_names_its_field(changes: dict[str, object], field: str) -> None:
    bad = replace(GOOD, **changes)  # type: ignore[arg-type]
    assert fields(check_bar(bad, previous=None)) == [field]


def test_high_below_low_is_reported_once_not_as_open_and_close_too() -> None:
    bad = replace(GOOD, high=90.0, low=110.0)
    (violation,) = check_bar(bad, previous=None)
    assert violation.field == "high"
    assert "90.0" in violation.reason and "110.0" in violation.reason


def test_a_bar_breaking_several_rules_reports_them_all() -> None:
    bad = replace(GOOD, close=200.0, volume=-5.0, ts=T0 + timedelta(seconds=30))
    assert fields(check_bar(bad, previous=None)) == ["close", "volume", "ts"]


def test_time_must_move_forward_within_a_series() -> None:
    same = check_bar(GOOD, previous=GOOD)
    back = check_bar(GOOD, previous=replace(GOOD, ts=T0 + timedelta(hours=1)))
    assert fields(same) == ["ts"] and fields(back) == ["ts"]
    assert "previous" in back[0].reason
    other_series = replace(GOOD, symbol="ETHUSD", ts=T0 + timedelta(hours=5))
    assert check_bar(GOOD, previous=other_series) == []
    other_timeframe = replace(GOOD, timeframe="1m", ts=T0 + timedelta(hours=5))
    assert check_bar(GOOD, previous=other_timeframe) == []


def test_alignment_per_timeframe_and_an_offset_grid() -> None:
    assert check_bar(replace(GOOD, timeframe="4h", ts=T0.replace(hour=8)), previous=None) == []
    assert fields(check_bar(replace(GOOD, timeframe="4h"), previous=None)) == ["ts"]  # 10:00
    daily = replace(GOOD, timeframe="1d", ts=T0.replace(hour=0))
    assert check_bar(daily, previous=None) == []
    half_past = replace(GOOD, ts=T0.replace(hour=14, minute=30))
    assert fields(check_bar(half_past, previous=None)) == ["ts"]
    assert check_bar(half_past, previous=None, align_offset=timedelta(minutes=30)) == []


def hours(start: datetime, *offsets: int) -> list[datetime]:
    return [start + timedelta(hours=h) for h in offsets]


def test_gaps_24x7_are_every_missing_bar() -> None:
    ts = hours(T0, 0, 1, 2, 5, 6, 10)
    assert find_gaps(ts, "1h", calendar="24x7") == [
        Gap(after=ts[2], before=ts[3], missing=2),
        Gap(after=ts[4], before=ts[5], missing=3),
    ]
    assert find_gaps(hours(T0, 0, 1, 2), "1h", calendar="24x7") == []
    assert find_gaps([], "1h", calendar="24x7") == []


def test_fx_weekend_is_not_a_gap_but_a_missing_friday_hour_is() -> None:
    friday_20 = datetime(2026, 3, 6, 20, 0, tzinfo=UTC)
    # Friday 20:00, 21:00, then Sunday 22:00: the market was closed in between.
    ts = [friday_20, friday_20 + timedelta(hours=1), friday_20 + timedelta(hours=50)]
    assert find_gaps(ts, "1h", calendar="fx") == []
    # Friday 20:00 then Sunday 22:00: the 21:00 bar is missing.
    assert find_gaps([ts[0], ts[2]], "1h", calendar="fx") == [
        Gap(after=ts[0], before=ts[2], missing=1)
    ]
    # On 24x7 the same 49 hours are 48 missing bars.
    assert find_gaps([ts[1], ts[2]], "1h", calendar="24x7")[0].missing == 48


def test_fx_daily_bars_skip_weekends() -> None:
    friday = datetime(2026, 3, 6, tzinfo=UTC)
    assert find_gaps([friday, friday + timedelta(days=3)], "1d", calendar="fx") == []
    tuesday = friday + timedelta(days=4)
    assert find_gaps([friday, tuesday], "1d", calendar="fx")[0].missing == 1


def test_equity_intraday_session_and_daily_weekdays() -> None:
    monday_14 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    # 14:00 … 20:00 hourly bars overlap the 14:30–21:00 session; 21:00 to next 14:00 do not.
    day = [monday_14 + timedelta(hours=h) for h in range(7)]
    next_day = [t + timedelta(days=1) for t in day]
    assert find_gaps(day + next_day, "1h", calendar="equity_us") == []
    without_16 = [t for t in day if t.hour != 16] + next_day
    assert find_gaps(without_16, "1h", calendar="equity_us") == [
        Gap(after=day[1], before=day[3], missing=1)
    ]
    friday = datetime(2026, 3, 6, tzinfo=UTC)
    monday = friday + timedelta(days=3)
    assert find_gaps([friday, monday], "1d", calendar="equity_us") == []
    # A holiday (no modelling of exchange holidays) is reported.
    assert find_gaps([monday, monday + timedelta(days=2)], "1d", calendar="equity_us") == [
        Gap(after=monday, before=monday + timedelta(days=2), missing=1)
    ]


def test_gap_report_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        find_gaps(hours(T0, 1, 0), "1h", calendar="24x7")
    with pytest.raises(ValueError, match="calendar 'moon'"):
        find_gaps(hours(T0, 0, 1), "1h", calendar="moon")
    with pytest.raises(ValueError, match="'7m'"):
        find_gaps(hours(T0, 0, 1), "7m", calendar="24x7")


@pytest.mark.parametrize(
    ("symbol", "calendar"),
    [
        ("BTCUSD", "24x7"),
        ("BTC/USDT", "24x7"),
        ("eth-usd", "24x7"),
        ("SOLUSDT", "24x7"),
        ("ETHBTC", "24x7"),
        ("BTC-PERP", "24x7"),
        ("PEPEUSDC", "24x7"),
        ("EURUSD", "fx"),
        ("USD/JPY", "fx"),
        ("XAUUSD", "fx"),
        ("GOOG", "equity_us"),
        ("SPY", "equity_us"),
        ("APTV", "equity_us"),  # starts with a crypto base (APT) but is not a pair
        ("OPEN", "equity_us"),
        ("NEAR", "equity_us"),  # a crypto base alone is also a stock ticker
        ("BTC", "24x7"),
    ],
)
def test_calendar_heuristic(symbol: str, calendar: str) -> None:
    assert calendar_for(symbol) == calendar


def test_calendar_override_wins_and_is_checked() -> None:
    assert calendar_for("GOOG", overrides={"GOOG": "24x7"}) == "24x7"
    assert calendar_for("EURUSD", overrides={"GOOG": "24x7"}) == "fx"
    with pytest.raises(ValueError, match="'GOOG'.*'weekly'"):
        calendar_for("GOOG", overrides={"GOOG": "weekly"})


# --- properties ----------------------------------------------------------------------------

prices = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.integers(-5, 5).map(float)


@settings(max_examples=300, deadline=None)
@given(prices, prices, prices, prices, prices)
def test_a_bar_passes_exactly_when_its_numbers_are_consistent(
    o: float, h: float, lo: float, c: float, v: float
) -> None:
    bar = replace(GOOD, open=o, high=h, low=lo, close=c, volume=v)
    consistent = (
        all(math.isfinite(x) for x in (o, h, lo, c, v)) and lo <= o <= h and lo <= c <= h and v >= 0
    )
    violations = check_bar(bar, previous=None)
    assert (violations == []) == consistent
    assert set(fields(violations)) <= {"open", "high", "low", "close", "volume"}


def open_in(calendar: str, t: datetime, step: int) -> bool:
    """Written apart from the module: whether a bar of ``step`` minutes (15, 30 or 60)
    opening at t is expected: FX shut Friday 22:00 to Sunday 22:00, US equities on weekdays
    for bars overlapping 14:30-21:00."""
    wd, minute = t.weekday(), t.hour * 60 + t.minute
    if calendar == "fx":
        return not ((wd == 4 and t.hour >= 22) or wd == 5 or (wd == 6 and t.hour < 22))
    if calendar == "equity_us":
        return wd < 5 and minute + step > 14 * 60 + 30 and minute < 21 * 60
    return True


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["24x7", "fx", "equity_us"]),
    st.sampled_from([("15m", 15), ("30m", 30), ("1h", 60)]),
    st.integers(0, 6),
    st.data(),
)
def test_gaps_count_exactly_the_expected_bars_removed(
    calendar: str, tf: tuple[str, int], start_day: int, data: st.DataObject
) -> None:
    timeframe, step = tf
    start = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=start_day)
    grid = [start + timedelta(minutes=step * i) for i in range(10 * 24 * 60 // step)]
    expected = [t for t in grid if open_in(calendar, t, step)]
    removed = data.draw(st.sets(st.integers(1, len(expected) - 2), max_size=40))
    present = [t for i, t in enumerate(expected) if i not in removed]
    gaps = find_gaps(present, timeframe, calendar=calendar)
    assert sum(g.missing for g in gaps) == len(removed)
    for g in gaps:
        assert g.after in present and g.before in present
        assert g.missing == sum(1 for t in expected if g.after < t < g.before)
