"""Pure registry logic: stages, rollback choice, promotion gates (no I/O)."""

from hindsight.registry.domain.gates import (
    GateCheck,
    GatePolicy,
    Headline,
    evaluate_gates,
    gates_passed,
    headline,
)
from hindsight.registry.domain.stages import (
    ALLOWED_MOVES,
    AuditEntry,
    ConflictError,
    Stage,
    check_move,
    rollback_target,
)

__all__ = [
    "ALLOWED_MOVES",
    "AuditEntry",
    "ConflictError",
    "GateCheck",
    "GatePolicy",
    "Headline",
    "Stage",
    "check_move",
    "evaluate_gates",
    "gates_passed",
    "headline",
    "rollback_target",
]
