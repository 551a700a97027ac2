from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from hindsight.trainer.domain.schedule import Schedule, next_fire

pytestmark = pytest.mark.unit
S = Schedule()


@pytest.mark.parametrize(
    ("now", "expected", "mode"),
    [
        (
            datetime(2026, 11, 18, 0, 59, tzinfo=UTC),
            datetime(2026, 11, 18, 1, 0, tzinfo=UTC),
            "incremental",
        ),  # Wed
        (
            datetime(2026, 11, 18, 1, 0, tzinfo=UTC),
            datetime(2026, 11, 19, 1, 0, tzinfo=UTC),
            "incremental",
        ),
        (
            datetime(2026, 11, 21, 2, 0, tzinfo=UTC),
            datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
            "full",
        ),  # Sat
        (
            datetime(2026, 11, 22, 0, 30, tzinfo=UTC),
            datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
            "full",
        ),  # Sun
        (
            datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
            datetime(2026, 11, 23, 1, 0, tzinfo=UTC),
            "incremental",
        ),
    ],
)
def test_next_fire(now: datetime, expected: datetime, mode: str) -> None:
    assert next_fire(now, S) == (expected, mode)


def test_configured_times() -> None:
    s = Schedule(daily_at=time(3, 30), weekly_at=time(5, 0), weekday=0)
    now = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # Monday 04:00
    assert next_fire(now, s) == (datetime(2026, 11, 23, 5, 0, tzinfo=UTC), "full")


def test_versions_sort_by_time_and_are_valid_names() -> None:
    from hindsight.common.artifacts import validate_name
    from hindsight.trainer.runs import make_version

    a = make_version(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "abcdef0123")
    b = make_version(datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC), "req/with spaces")
    assert a == "20260102T030405Z-abcdef" and a < b
    assert validate_name(b, field="version") == b and len(b.split("-")[1]) == 6
