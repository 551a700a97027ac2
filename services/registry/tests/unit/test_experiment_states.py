"""Unit tests of the experiment state machine and its rules."""

from __future__ import annotations

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.registry.domain import (
    ConflictError,
    ExperimentKind,
    ExperimentState,
    Stage,
    arms,
    check_approvable,
    check_candidate,
    check_transition,
    resolve_share,
    traffic,
)

pytestmark = pytest.mark.unit

A, C, X = ExperimentState.ACTIVE, ExperimentState.COMPLETED, ExperimentState.CANCELLED


@pytest.mark.parametrize(("current", "target"), [(A, C), (A, X)])
def test_allowed_transitions(current: ExperimentState, target: ExperimentState) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"), [(C, X), (X, C), (C, C), (X, X), (C, A), (X, A), (A, A)]
)
def test_forbidden_transitions(current: ExperimentState, target: ExperimentState) -> None:
    with pytest.raises(ConflictError):
        check_transition(current, target)


def test_shares_and_traffic() -> None:
    assert resolve_share(ExperimentKind.CANARY, None) == 0.1
    assert resolve_share(ExperimentKind.AB, None) == 0.5
    assert resolve_share(ExperimentKind.AB, 0.3) == 0.3
    assert resolve_share(ExperimentKind.SHADOW, 0.3) is None
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(InvalidInputError) as info:
            resolve_share(ExperimentKind.CANARY, bad)
        assert info.value.field == "candidate_share"
    split = traffic("v1", "v2", 0.1)
    assert split == {"v1": pytest.approx(0.9), "v2": 0.1}
    assert split is not None and sum(split.values()) == pytest.approx(1.0)
    assert traffic("v1", "v2", None) is None
    assert arms(ExperimentKind.SHADOW) == ("control", "shadow")
    assert arms(ExperimentKind.CANARY) == arms(ExperimentKind.AB) == ("control", "candidate")


def test_candidate_rules() -> None:
    check_candidate(candidate="v2", candidate_stage=Stage.CANDIDATE, production="v1")
    check_candidate(candidate="v2", candidate_stage=Stage.STAGING, production="v1")
    with pytest.raises(ConflictError, match="no production"):
        check_candidate(candidate="v2", candidate_stage=Stage.CANDIDATE, production=None)
    with pytest.raises(ConflictError, match="already production"):
        check_candidate(candidate="v1", candidate_stage=Stage.PRODUCTION, production="v1")
    for stage in (Stage.ARCHIVED, Stage.REFUSED):
        with pytest.raises(ConflictError):
            check_candidate(candidate="v2", candidate_stage=stage, production="v1")


def test_approval_rules() -> None:
    check_approvable(C, "promote", "pending")
    with pytest.raises(ConflictError):
        check_approvable(A, None, None)
    with pytest.raises(ConflictError):
        check_approvable(C, "inconclusive", None)
    with pytest.raises(ConflictError):
        check_approvable(X, "keep", None)
    with pytest.raises(ConflictError, match="applied"):
        check_approvable(C, "promote", "applied")
