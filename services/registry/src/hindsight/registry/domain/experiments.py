"""The experiment state machine: kinds, arms, traffic split, allowed transitions (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping

from hindsight.common.errors import InvalidInputError
from hindsight.common.registry_api import ExperimentKind, ExperimentState, PromotionState
from hindsight.registry.domain.stages import ConflictError, Stage

__all__ = [
    "CONTROL",
    "DEFAULT_SHARE",
    "EXPERIMENT_MOVES",
    "ExperimentKind",
    "ExperimentState",
    "PromotionState",
    "arms",
    "candidate_arm",
    "check_approvable",
    "check_candidate",
    "check_transition",
    "resolve_share",
    "traffic",
]

CONTROL = "control"


EXPERIMENT_MOVES: Mapping[ExperimentState, frozenset[ExperimentState]] = {
    ExperimentState.ACTIVE: frozenset({ExperimentState.COMPLETED, ExperimentState.CANCELLED}),
    ExperimentState.COMPLETED: frozenset(),
    ExperimentState.CANCELLED: frozenset(),
}

DEFAULT_SHARE: Mapping[ExperimentKind, float] = {
    ExperimentKind.CANARY: 0.1,
    ExperimentKind.AB: 0.5,
}


def check_transition(current: ExperimentState, target: ExperimentState) -> None:
    """Raise :class:`ConflictError` unless ``current -> target`` is allowed."""
    if target not in EXPERIMENT_MOVES[current]:
        raise ConflictError(f"cannot move a {current} experiment to {target}")


def resolve_share(kind: ExperimentKind, requested: float | None) -> float | None:
    """The candidate's traffic share: the request, else the kind's default; None for shadow."""
    if kind is ExperimentKind.SHADOW:
        return None
    share = DEFAULT_SHARE[kind] if requested is None else requested
    if not 0 < share < 1:
        raise InvalidInputError("must be > 0 and < 1", field="candidate_share")
    return float(share)


def traffic(control: str, candidate: str, share: float | None) -> dict[str, float] | None:
    """Version -> routing weight (sums to 1); None for shadow experiments."""
    if share is None:
        return None
    return {control: round(1.0 - share, 12), candidate: share}


def candidate_arm(kind: ExperimentKind) -> str:
    """The arm name the gateway logs for the candidate: ``shadow`` or ``candidate``."""
    return "shadow" if kind is ExperimentKind.SHADOW else "candidate"


def arms(kind: ExperimentKind) -> tuple[str, str]:
    """(control arm, candidate arm) as they appear in ``prediction.logged``."""
    return CONTROL, candidate_arm(kind)


def check_candidate(*, candidate: str, candidate_stage: Stage, production: str | None) -> None:
    """A candidate must be a registered candidate/staging version and production must exist."""
    if production is None:
        raise ConflictError("the model has no production version to compare with")
    if candidate == production:
        raise ConflictError(f"{candidate} is already production")
    if candidate_stage not in (Stage.CANDIDATE, Stage.STAGING):
        raise ConflictError(
            f"{candidate} is {candidate_stage}: only candidate or staging versions can be tested"
        )


def check_approvable(state: ExperimentState, decision: str | None, promotion: str | None) -> None:
    """Approval applies a pending ``promote`` decision of a completed experiment, once."""
    if state is not ExperimentState.COMPLETED or decision != "promote":
        raise ConflictError(
            f"only a completed experiment with decision promote can be approved "
            f"(state {state}, decision {decision})"
        )
    if promotion != PromotionState.PENDING:
        raise ConflictError(f"the promotion is {promotion}, not pending")
