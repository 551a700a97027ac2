"""The fallback policy: which reason a fallback answer gives, and the deadline budget."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Attempt",
    "Budget",
    "FallbackReason",
    "Outcome",
    "fallback_reason",
    "is_no_model",
]


class FallbackReason(StrEnum):
    """Why the gateway answered a fallback (the wire value of ``fallback_reason``)."""

    BREAKER_OPEN = "breaker_open"
    """Every scorer endpoint's breaker refused the call."""
    DEADLINE = "deadline"
    """The budget ran out before a scorer answered."""
    UNAVAILABLE = "unavailable"
    """Every scorer tried failed (unreachable, UNAVAILABLE, INTERNAL, ...)."""
    NO_MODEL = "no_model"
    """A scorer answered UNAVAILABLE because it has no model to serve."""
    OVERLOADED = "overloaded"
    """The bulkhead was full: too many calls in flight."""


class Outcome(StrEnum):
    """How one attempt on one endpoint ended (failures only; success answers)."""

    DEADLINE = "deadline"
    UNAVAILABLE = "unavailable"
    NO_MODEL = "no_model"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Attempt:
    """A failed attempt on one endpoint."""

    endpoint: str
    outcome: Outcome


def is_no_model(details: str | None) -> bool:
    """Whether a scorer's UNAVAILABLE message says that it has no model to serve."""
    text = (details or "").lower()
    return text.startswith("no model") or text.startswith("no production version")


def fallback_reason(
    attempts: list[Attempt], *, refused_by_breaker: int, budget_left: bool
) -> FallbackReason:
    """The reason of a fallback after ``attempts`` (in order) all failed.

    No attempt at all: the breakers refused every endpoint, or there was no budget.
    Otherwise the last attempt decides, and a budget that ran out means ``deadline``.
    """
    if not attempts:
        if refused_by_breaker and budget_left:
            return FallbackReason.BREAKER_OPEN
        return FallbackReason.DEADLINE
    last = attempts[-1].outcome
    if last is Outcome.DEADLINE or not budget_left:
        return FallbackReason.DEADLINE
    if last is Outcome.NO_MODEL:
        return FallbackReason.NO_MODEL
    if any(a.outcome is Outcome.NO_MODEL for a in attempts):
        return FallbackReason.NO_MODEL
    return FallbackReason.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Budget:
    """A deadline in the clock's seconds: what is left, never negative."""

    deadline: float

    @classmethod
    def plan(
        cls,
        now: float,
        *,
        caller_remaining_s: float | None,
        default_s: float,
        margin_s: float,
        margin_ratio: float = 0.0,
    ) -> Budget:
        """The caller's deadline (or the default when it set none) minus the safety margin.

        The margin is ``max(margin_s, margin_ratio * total)``: time to build and send the
        answer, and for the caller's clock, which started before the call reached us.
        """
        total = default_s if caller_remaining_s is None else caller_remaining_s
        return cls(now + max(0.0, total - max(margin_s, margin_ratio * total)))

    def remaining(self, now: float) -> float:
        """Seconds left at ``now`` (0 when spent)."""
        return max(0.0, self.deadline - now)
