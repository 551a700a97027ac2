"""The training schedule: daily incremental runs and a weekly full run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

__all__ = ["Schedule", "next_fire"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Daily incremental at ``daily_at`` UTC; weekly full on ``weekday`` at ``weekly_at``."""

    daily_at: time = time(1, 0)
    weekly_at: time = time(1, 0)
    weekday: int = 6  # Sunday


def _next_daily(now: datetime, at: time) -> datetime:
    candidate = datetime.combine(now.date(), at, tzinfo=UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)


def _next_weekly(now: datetime, at: time, weekday: int) -> datetime:
    days = (weekday - now.weekday()) % 7
    candidate = datetime.combine(now.date() + timedelta(days=days), at, tzinfo=UTC)
    return candidate if candidate > now else candidate + timedelta(days=7)


def next_fire(now: datetime, schedule: Schedule) -> tuple[datetime, Literal["full", "incremental"]]:
    """The next run strictly after ``now`` and its mode; a full run wins a tie."""
    now = now.astimezone(UTC)
    daily = _next_daily(now, schedule.daily_at)
    weekly = _next_weekly(now, schedule.weekly_at, schedule.weekday)
    return (weekly, "full") if weekly <= daily else (daily, "incremental")
