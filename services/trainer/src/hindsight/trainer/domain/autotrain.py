"""When new outcomes are reason enough to train (the data trigger), as a pure rule.

The same rule decides a model family's data-triggered runs, on Back-Labeler labels instead
of outcomes (``hindsight.trainer.family_trigger``; ``DataPolicy.what`` = "labels").

Two counts, two reference points (README: Data-triggered runs):

* ``pending``: outcomes received since the newest run whose version the registry
  *accepted* (its gates passed, or it is production). A refused or failed run does not
  reset it: what that run saw has not been learnt yet.
* ``fresh``: outcomes received since the newest run that trained or tried to (any end
  state but ``skipped``). A run on no fresh outcome would see exactly what the last one
  saw (training is deterministic), so nothing is due without one.

Threshold: ``fresh >= outcomes``. Quiet: ``fresh > 0``, ``pending >= enough`` (the
incremental minimum, or the first run's ``min_rows``) and no outcome for ``quiet_s``.
So a refused run followed by any burst, however small, is retrained on all the data
once the flow goes quiet, wherever the batches happened to fall.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["DataPolicy", "DataState", "data_run_due", "incremental_skip"]


@dataclass(frozen=True, slots=True)
class DataPolicy:
    """The trigger's settings (``AUTO_TRAIN_*``, ``MIN_NEW_OUTCOMES``, ``MIN_ROWS``)."""

    outcomes: int
    quiet_s: float
    min_new_outcomes: int
    min_rows: int
    what: str = "outcomes"
    """What is counted, for reasons (a family's trigger counts Back-Labeler labels)."""


@dataclass(frozen=True, slots=True)
class DataState:
    """What the trainer's tables and the registry say now."""

    pending: int
    fresh: int
    has_accepted: bool
    newest_outcome_at: datetime | None
    has_attempt: bool = True
    base: str = "the last accepted version"  # how ``pending`` is counted, for reasons


def data_run_due(state: DataState, policy: DataPolicy, *, now: datetime) -> str | None:
    """The reason a data-triggered run is due now, or None."""
    if policy.outcomes <= 0 or state.fresh <= 0:
        return None
    if state.fresh >= policy.outcomes:
        return (
            f"{state.fresh} new {policy.what} since the last run, {state.pending} since "
            f"{state.base} (every {policy.outcomes})"
        )
    if policy.quiet_s <= 0 or state.newest_outcome_at is None:
        return None
    enough = policy.min_new_outcomes if state.has_accepted else policy.min_rows
    if state.pending < enough:
        return None
    if (now - state.newest_outcome_at).total_seconds() < policy.quiet_s:
        return None
    return (
        f"{state.pending} new {policy.what} since {state.base} ({state.fresh} since the last "
        f"run), then none for {policy.quiet_s:g} s"
    )


def incremental_skip(state: DataState, *, min_new_outcomes: int) -> str | None:
    """Why an incremental run would learn nothing worth a version, or None.

    The same reference points as the data trigger, so a run it starts is not skipped.
    """
    if state.has_accepted and state.pending < min_new_outcomes:
        return f"only {state.pending} new outcomes since {state.base} (min {min_new_outcomes})"
    if state.has_attempt and state.fresh == 0:
        return "no new outcome since the last run: it would train on the same data"
    return None
