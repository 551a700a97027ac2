"""The stage state machine of a model version, and which version a rollback restores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hindsight.common.errors import AlreadyExistsError
from hindsight.common.registry_api import Stage

__all__ = [
    "ALLOWED_MOVES",
    "AuditEntry",
    "ConflictError",
    "Stage",
    "check_move",
    "rollback_target",
]


class ConflictError(AlreadyExistsError):
    """The request conflicts with the registry's current state (HTTP 409)."""


# archived -> production is what a rollback (or re-promotion of an old version) does.
ALLOWED_MOVES: Mapping[Stage, frozenset[Stage]] = {
    Stage.CANDIDATE: frozenset({Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.STAGING: frozenset({Stage.CANDIDATE, Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.PRODUCTION}),
    Stage.REFUSED: frozenset(),
}


def check_move(current: Stage, target: Stage) -> None:
    """Raise :class:`ConflictError` unless ``current -> target`` is an allowed move."""
    if target not in ALLOWED_MOVES[current]:
        allowed = ", ".join(sorted(ALLOWED_MOVES[current])) or "none"
        raise ConflictError(
            f"cannot move a {current} version to {target} (allowed from {current}: {allowed})"
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """The part of an audit row that rollback needs, oldest first in a history."""

    version: str
    from_stage: Stage | None
    to_stage: Stage
    action: str


def rollback_target(
    history: Sequence[AuditEntry], *, current: str, stages: Mapping[str, Stage]
) -> str | None:
    """The version that was production before ``current``, or None.

    Walks the history backwards to the last production entry of another version that
    is archived now. Versions that were themselves rolled back out of production are
    skipped, so two rollbacks in a row step further back instead of toggling.
    """
    rolled_back = {
        e.version for e in history if e.action == "rollback" and e.from_stage is Stage.PRODUCTION
    }
    for entry in reversed(history):
        if (
            entry.to_stage is Stage.PRODUCTION
            and entry.version != current
            and entry.version not in rolled_back
            and stages.get(entry.version) is Stage.ARCHIVED
        ):
            return entry.version
    return None
