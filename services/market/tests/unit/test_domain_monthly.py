"""The ``1mo`` calendar timeframe: bars open on the first of a month at 00:00 UTC, close on
the first of the next (28 to 31 days, leap years included), a missing month is a gap and a
month's length is not, gaps are reported and never filled, and the labels' horizon in bars
and ``t_hit_*`` minutes follow the real times."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hindsight.market.domain.bars import TIMEFRAMES, Bar, month_start, timeframe_of
from hindsight.market.domain.integrity import CALENDARS, Gap, check_bar, find_gaps
from hindsight.market.domain.labels import LabelSpec, label_from_atr

pytestmark = pytest.mark.unit

MONTH = timeframe_of("1mo")


def utc(year: int, month: int, day: int = 1, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def monthly(year: int, month: int, *, close: float = 100.0) -> Bar:
    return Bar("BTCUSD", "1mo", utc(year, month), close, close + 5, close - 5, close, 10.0)


month_index = st.integers(min_value=1970 * 12, max_value=2199 * 12 + 11)


def from_index(index: int) -> datetime:
    return utc(index // 12, index % 12 + 1)


def test_month_ends_and_leap_years() -> None:
    assert monthly(2024, 1).end == utc(2024, 2, 1)
    assert monthly(2024, 2).end - utc(2024, 2) == timedelta(days=29)  # leap year
    assert monthly(2023, 2).end - utc(2023, 2) == timedelta(days=28)
    assert monthly(2100, 2).end - utc(2100, 2) == timedelta(days=28)  # century, not leap
    assert monthly(2000, 2).end - utc(2000, 2) == timedelta(days=29)  # 400 years: leap
    assert monthly(2024, 4).end - utc(2024, 4) == timedelta(days=30)
    assert monthly(2024, 12).end == utc(2025, 1, 1)  # the year turns
    assert MONTH.shift(utc(2025, 1), -1) == utc(2024, 12)
    assert MONTH.shift(utc(2024, 1, 31), 1) == utc(2024, 2, 29)  # a day past the end: clamped
    # Sorted by length, the month comes after every fixed timeframe.
    assert max(TIMEFRAMES.values()) is MONTH and MONTH.is_calendar


@settings(max_examples=300, deadline=None)
@given(month_index, st.integers(min_value=-60, max_value=60))
def test_a_bar_lasts_its_month_and_shifts_compose(index: int, n: int) -> None:
    ts = from_index(index)
    year, month = ts.year, ts.month
    assert MONTH.end(ts) - ts == timedelta(days=calendar.monthrange(year, month)[1])
    assert MONTH.shift(MONTH.shift(ts, n), -n) == ts
    assert MONTH.shift(ts, n) == from_index(index + n)
    assert MONTH.is_aligned(ts)
    assert check_bar(monthly(year, month), previous=None) == []


@settings(max_examples=200, deadline=None)
@given(
    month_index,
    st.integers(min_value=0, max_value=27),
    st.integers(min_value=0, max_value=23),
)
def test_only_the_first_at_midnight_is_a_monthly_open(index: int, day: int, hour: int) -> None:
    start = from_index(index)
    ts = start.replace(day=day + 1, hour=hour) if day or hour else start.replace(hour=1)
    assert not MONTH.is_aligned(ts)
    bar = Bar("BTCUSD", "1mo", ts, 100.0, 105.0, 95.0, 100.0, 1.0)
    found = check_bar(bar, previous=None)
    assert [v.field for v in found] == ["ts"] and "not aligned to the 1mo grid" in found[0].reason
    assert month_start(ts) == start


@settings(max_examples=200, deadline=None)
@given(
    month_index,
    st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=20),
    st.sampled_from(CALENDARS),
)
def test_a_missing_month_is_a_gap_and_a_months_length_is_not(
    index: int, steps: list[int], calendar_name: str
) -> None:
    opens = [from_index(index)]
    for step in steps:
        opens.append(MONTH.shift(opens[-1], step))
    expected = [
        Gap(after=a, before=b, missing=step - 1)
        for a, b, step in zip(opens[:-1], opens[1:], steps, strict=True)
        if step > 1
    ]
    assert find_gaps(opens, "1mo", calendar=calendar_name) == expected


def test_a_gap_is_reported_never_filled() -> None:
    # 2023-12 .. 2024-05 with February and March missing: one gap of two months, which spans
    # the leap day; the series given is left exactly as it was (nothing is invented).
    opens = [utc(2023, 12), utc(2024, 1), utc(2024, 4), utc(2024, 5)]
    before = list(opens)
    assert find_gaps(opens, "1mo", calendar="equity_us") == [
        Gap(after=utc(2024, 1), before=utc(2024, 4), missing=2)
    ]
    assert opens == before
    assert MONTH.opens_between(utc(2024, 1), utc(2024, 4)) == [utc(2024, 2), utc(2024, 3)]
    # Contiguous months of 28, 29, 30 and 31 days: no gap at all.
    contiguous = [utc(2023, 1), utc(2023, 2), utc(2023, 3), utc(2024, 2), utc(2024, 3)]
    assert find_gaps(contiguous[:3], "1mo", calendar="24x7") == []
    assert find_gaps(contiguous[3:], "1mo", calendar="fx") == []


def test_time_going_back_is_refused_for_months() -> None:
    found = check_bar(monthly(2024, 3), previous=monthly(2024, 4))
    assert [v.field for v in found] == ["ts"] and "not after" in found[0].reason


@pytest.mark.parametrize(
    ("end", "latest_open"),
    [
        (utc(2024, 3, 1), utc(2024, 2, 1)),  # exactly at a close: that bar counts
        (utc(2024, 3, 31, 23), utc(2024, 2, 1)),  # March has not closed yet
        (utc(2024, 1, 15), utc(2023, 12, 1)),
    ],
)
def test_point_in_time_windows_end_on_real_month_closes(
    end: datetime, latest_open: datetime
) -> None:
    got = MONTH.latest_open_closed_by(end)
    assert got == latest_open
    assert MONTH.end(got) <= end < MONTH.end(MONTH.shift(got))


def test_labels_count_the_horizon_in_bars_and_minutes_in_real_time() -> None:
    spec = LabelSpec(horizon_bars=3, risk_horizon_bars=2, offset_fill_bars=1)
    signal_ts = utc(2024, 1)  # the signal at January's open; its horizon is Jan, Feb, Mar
    # January drifts, February (29 days) touches the target, March the stop.
    future = [
        Bar("BTCUSD", "1mo", utc(2024, 1), 100.0, 104.0, 97.0, 101.0, 1.0),
        Bar("BTCUSD", "1mo", utc(2024, 2), 101.0, 111.0, 100.0, 110.0, 1.0),
        Bar("BTCUSD", "1mo", utc(2024, 3), 110.0, 112.0, 89.0, 90.0, 1.0),
        Bar("BTCUSD", "1mo", utc(2024, 4), 90.0, 300.0, 1.0, 90.0, 1.0),  # after the horizon
    ]
    labels = label_from_atr(
        side="buy", signal_ts=signal_ts, entry=100.0, atr_value=10.0, future=future, spec=spec
    )
    assert labels.horizon_bars == 3 and labels.y_entry == 1 and labels.realised_r == 1.0
    minutes_to_march = (31 + 29) * 24 * 60  # February's close: the 1st of March
    minutes_to_april = (31 + 29 + 31) * 24 * 60
    assert labels.t_hit_tp == minutes_to_march
    assert labels.t_hit_sl == minutes_to_april
    assert labels.runup_r == pytest.approx(1.2) and labels.drawdown_r == pytest.approx(1.1)
