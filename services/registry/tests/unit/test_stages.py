"""The stage state machine and the rollback choice (pure)."""

from __future__ import annotations

import pytest

from hindsight.registry.domain import (
    ALLOWED_MOVES,
    AuditEntry,
    ConflictError,
    Stage,
    check_move,
    rollback_target,
)

pytestmark = pytest.mark.unit

ALLOWED = [
    (Stage.CANDIDATE, Stage.STAGING),
    (Stage.CANDIDATE, Stage.PRODUCTION),
    (Stage.CANDIDATE, Stage.ARCHIVED),
    (Stage.STAGING, Stage.PRODUCTION),
    (Stage.STAGING, Stage.CANDIDATE),
    (Stage.STAGING, Stage.ARCHIVED),
    (Stage.PRODUCTION, Stage.ARCHIVED),
    (Stage.ARCHIVED, Stage.PRODUCTION),
]


@pytest.mark.parametrize(("src", "dst"), ALLOWED)
def test_allowed_moves_pass(src: Stage, dst: Stage) -> None:
    check_move(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [(a, b) for a in Stage for b in Stage if (a, b) not in ALLOWED],
)
def test_every_other_move_is_a_conflict(src: Stage, dst: Stage) -> None:
    with pytest.raises(ConflictError, match=f"cannot move a {src}"):
        check_move(src, dst)


def test_refused_is_terminal() -> None:
    assert ALLOWED_MOVES[Stage.REFUSED] == frozenset()


def _promote(version: str, src: Stage | None, action: str = "promote") -> AuditEntry:
    return AuditEntry(version, src, Stage.PRODUCTION, action)


def test_rollback_picks_the_production_before_the_current_one() -> None:
    history = [
        AuditEntry("v1", None, Stage.CANDIDATE, "register"),
        _promote("v1", Stage.CANDIDATE),
        AuditEntry("v2", None, Stage.CANDIDATE, "register"),
        AuditEntry("v1", Stage.PRODUCTION, Stage.ARCHIVED, "promote"),
        _promote("v2", Stage.CANDIDATE),
        AuditEntry("v3", None, Stage.CANDIDATE, "register"),
        AuditEntry("v2", Stage.PRODUCTION, Stage.ARCHIVED, "promote"),
        _promote("v3", Stage.CANDIDATE),
    ]
    stages = {"v1": Stage.ARCHIVED, "v2": Stage.ARCHIVED, "v3": Stage.PRODUCTION}
    assert rollback_target(history, current="v3", stages=stages) == "v2"


def test_a_second_rollback_steps_further_back_instead_of_toggling() -> None:
    history = [
        _promote("v1", Stage.CANDIDATE),
        AuditEntry("v1", Stage.PRODUCTION, Stage.ARCHIVED, "promote"),
        _promote("v2", Stage.CANDIDATE),
        AuditEntry("v2", Stage.PRODUCTION, Stage.ARCHIVED, "promote"),
        _promote("v3", Stage.CANDIDATE),
        AuditEntry("v3", Stage.PRODUCTION, Stage.ARCHIVED, "rollback"),
        _promote("v2", Stage.ARCHIVED, "rollback"),
    ]
    stages = {"v1": Stage.ARCHIVED, "v2": Stage.PRODUCTION, "v3": Stage.ARCHIVED}
    assert rollback_target(history, current="v2", stages=stages) == "v1"


def test_no_target_without_an_earlier_archived_production() -> None:
    history = [_promote("v1", Stage.CANDIDATE)]
    assert rollback_target(history, current="v1", stages={"v1": Stage.PRODUCTION}) is None
    # v0 was production once but is refused/absent now: not a target.
    history = [_promote("v0", Stage.CANDIDATE), *history]
    stages = {"v0": Stage.REFUSED, "v1": Stage.PRODUCTION}
    assert rollback_target(history, current="v1", stages=stages) is None
