"""The data trigger's rule, with an explicit clock (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hindsight.trainer.domain.autotrain import (
    DataPolicy,
    DataState,
    data_run_due,
    incremental_skip,
)

pytestmark = pytest.mark.unit
NOW = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = DataPolicy(outcomes=250, quiet_s=30, min_new_outcomes=100, min_rows=200)


def state(
    pending: int, fresh: int, *, accepted: bool, quiet_for: float = 60, attempt: bool = True
) -> DataState:
    return DataState(
        pending=pending,
        fresh=fresh,
        has_accepted=accepted,
        newest_outcome_at=NOW - timedelta(seconds=quiet_for),
        has_attempt=attempt,
    )


def test_the_threshold_counts_since_the_last_run_whatever_its_fate() -> None:
    assert data_run_due(
        state(319, 319, accepted=False, attempt=False, quiet_for=0), POLICY, now=NOW
    )
    assert data_run_due(state(569, 250, accepted=False, quiet_for=0), POLICY, now=NOW)
    assert data_run_due(state(388, 69, accepted=False, quiet_for=0), POLICY, now=NOW) is None


@pytest.mark.parametrize("batch", [250, 260, 319, 387])
def test_a_refused_run_anywhere_in_the_flow_is_followed_by_a_run_on_all_once_quiet(
    batch: int,
) -> None:
    """Issue 13: wherever ingest batching made the threshold run fire, the rest (even one
    outcome) is learnt with everything before it once the flow goes quiet."""
    rest = 388 - batch
    after = state(388, rest, accepted=False, quiet_for=31)
    reason = data_run_due(after, POLICY, now=NOW)
    assert reason == (
        f"388 new outcomes since the last accepted version ({rest} since the last run), "
        "then none for 30 s"
    )
    assert data_run_due(state(388, rest, accepted=False, quiet_for=29), POLICY, now=NOW) is None


def test_nothing_new_since_the_last_run_is_never_due() -> None:
    for accepted in (False, True):
        assert data_run_due(state(388, 0, accepted=accepted), POLICY, now=NOW) is None


def test_the_quiet_trigger_needs_enough_since_the_accepted_version() -> None:
    assert data_run_due(state(99, 99, accepted=True), POLICY, now=NOW) is None
    assert data_run_due(state(100, 31, accepted=True), POLICY, now=NOW)
    assert data_run_due(state(199, 199, accepted=False, attempt=False), POLICY, now=NOW) is None
    assert data_run_due(state(200, 200, accepted=False, attempt=False), POLICY, now=NOW)


def test_off_switches() -> None:
    off = DataPolicy(outcomes=0, quiet_s=30, min_new_outcomes=100, min_rows=200)
    assert data_run_due(state(1000, 1000, accepted=True), off, now=NOW) is None
    no_quiet = DataPolicy(outcomes=250, quiet_s=0, min_new_outcomes=100, min_rows=200)
    assert data_run_due(state(388, 69, accepted=False, quiet_for=1e6), no_quiet, now=NOW) is None


def test_the_incremental_skip_uses_the_same_counts() -> None:
    assert incremental_skip(state(99, 99, accepted=True), min_new_outcomes=100) == (
        "only 99 new outcomes since the last accepted version (min 100)"
    )
    assert incremental_skip(state(388, 0, accepted=False), min_new_outcomes=100) == (
        "no new outcome since the last run: it would train on the same data"
    )
    assert incremental_skip(state(388, 1, accepted=False), min_new_outcomes=100) is None
    assert (
        incremental_skip(state(0, 0, accepted=False, attempt=False), min_new_outcomes=100) is None
    )
    # Whatever the data trigger starts, the skip lets through.
    for s in (state(100, 31, accepted=True), state(388, 69, accepted=False)):
        assert data_run_due(s, POLICY, now=NOW) is not None
        assert incremental_skip(s, min_new_outcomes=POLICY.min_new_outcomes) is None


def test_a_familys_rule_counts_labels_and_says_so() -> None:
    labels = DataPolicy(outcomes=500, quiet_s=30, min_new_outcomes=100, min_rows=200, what="labels")
    threshold = data_run_due(state(600, 600, accepted=False, quiet_for=0), labels, now=NOW)
    assert threshold is not None and threshold.startswith("600 new labels since the last run")
    quiet = data_run_due(state(150, 150, accepted=True), labels, now=NOW)
    assert quiet is not None and "150 new labels since" in quiet and "none for 30 s" in quiet
    assert data_run_due(state(150, 150, accepted=False), labels, now=NOW) is None  # < min_rows
