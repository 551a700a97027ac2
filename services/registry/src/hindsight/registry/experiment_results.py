"""What an experiment shows (per-arm metrics, the test) and how it ends (complete, cancel).

An end writes the result, an audit row and ``ab.completed`` inside the caller's locked
transaction. :func:`cancel_active` is the production-change hook: an experiment compares a
candidate with one production version, so a new production voids it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from hindsight.registry.domain import (
    CONTROL,
    ArmMetrics,
    Decision,
    ExperimentState,
    PromotionState,
    Stage,
    TestDecision,
    arm_metrics,
    arms,
    check_transition,
    decide,
)
from hindsight.registry.events import ab_completed
from hindsight.registry.metrics import EXPERIMENTS_ENDED
from hindsight.registry.storage import (
    ArmResult,
    ExperimentRecord,
    ExperimentResult,
    Tables,
    Tx,
)

__all__ = [
    "AUTO_CANCEL_ACTOR",
    "Measurement",
    "audit",
    "cancel",
    "cancel_active",
    "candidate_stage",
    "complete",
    "measure",
]

logger = logging.getLogger(__name__)

AUTO_CANCEL_ACTOR = "registry:auto"


@dataclass(frozen=True, slots=True)
class Measurement:
    """An experiment's arms measured now: metrics per arm (control first) and the test."""

    experiment: ExperimentRecord
    per_arm: dict[str, ArmMetrics]
    verdict: TestDecision

    def version(self, arm: str) -> str:
        """The version an arm stands for."""
        if arm == CONTROL:
            return self.experiment.control_version
        return self.experiment.candidate_version

    def result(self) -> ExperimentResult:
        """The JSON form (``live``, and ``result`` once ended)."""
        return ExperimentResult(
            per_arm={
                arm: ArmResult(version=self.version(arm), **asdict(metrics))
                for arm, metrics in self.per_arm.items()
            },
            test=self.verdict,
        )

    def winner(self) -> str | None:
        """The winning version, if the test named one."""
        return None if self.verdict.winner is None else self.version(self.verdict.winner)


async def measure(tables: Tables, experiment: ExperimentRecord) -> Measurement:
    """Per-arm metrics and the test's verdict for an experiment, from the samples now."""
    control_arm, candidate_arm = arms(experiment.kind)
    control = await tables.outcomes.arm_samples(experiment, control_arm)
    candidate = await tables.outcomes.arm_samples(experiment, candidate_arm)
    verdict = decide(
        (control.y, control.p),
        (candidate.y, candidate.p),
        min_samples=experiment.min_samples_per_arm,
        alpha=experiment.alpha,
    )
    return Measurement(
        experiment,
        {
            control_arm: arm_metrics(control.y, control.p),
            candidate_arm: arm_metrics(candidate.y, candidate.p),
        },
        verdict,
    )


async def candidate_stage(tx: Tx, experiment: ExperimentRecord) -> Stage:
    """The candidate's stage (an experiment never changes it), locked for update."""
    row = await tx.versions.get(experiment.model_name, experiment.candidate_version, lock=True)
    return row.stage if row else Stage.CANDIDATE


async def audit(
    tx: Tx,
    experiment: ExperimentRecord,
    *,
    actor: str,
    action: str,
    reason: str,
    to_state: ExperimentState,
) -> None:
    """The audit row of an experiment's transition (from its current state to ``to_state``):
    the candidate's stage is unchanged."""
    stage = await candidate_stage(tx, experiment)
    await tx.audit.append(
        actor=actor,
        action=action,
        model_name=experiment.model_name,
        version=experiment.candidate_version,
        from_stage=stage,
        to_stage=stage,
        reason=reason,
        experiment_id=experiment.experiment_id,
        from_state=experiment.state,
        to_state=to_state,
    )


async def _end(
    tx: Tx,
    experiment: ExperimentRecord,
    measured: Measurement,
    *,
    state: ExperimentState,
    decision: Decision,
    winner: str | None,
    promotion: PromotionState | None,
    actor: str,
    reason: str,
    audit_reason: str,
) -> None:
    """End an active experiment (``completed`` or ``cancelled``) with its measurement, and
    audit the transition."""
    await tx.experiments.end(
        experiment.experiment_id,
        state=state,
        decision=decision,
        winner=winner,
        p_value=measured.verdict.p_value,
        result=measured.result(),
        promotion=promotion,
        ended_by=actor,
        reason=reason,
    )
    await audit(
        tx,
        experiment,
        actor=actor,
        action="experiment_complete" if state is ExperimentState.COMPLETED else "experiment_cancel",
        reason=audit_reason,
        to_state=state,
    )


async def complete(tx: Tx, experiment: ExperimentRecord, *, actor: str, reason: str) -> Measurement:
    """Decide an active experiment now; a promote decision is left pending (the caller's)."""
    check_transition(experiment.state, ExperimentState.COMPLETED)
    measured = await measure(tx, experiment)
    verdict = measured.verdict
    experiment_id, model_name = experiment.experiment_id, experiment.model_name
    await _end(
        tx,
        experiment,
        measured,
        state=ExperimentState.COMPLETED,
        decision=verdict.decision,
        winner=measured.winner(),
        promotion=PromotionState.PENDING if verdict.decision == "promote" else None,
        actor=actor,
        reason=reason,
        audit_reason=f"experiment {experiment_id} decided {verdict.decision}: "
        f"{verdict.reason} ({reason})",
    )
    await tx.queue(ab_completed(experiment, verdict, measured.per_arm, winner=measured.winner()))
    EXPERIMENTS_ENDED.labels(model_name, verdict.decision).inc()
    logger.info(
        "experiment completed",
        extra={
            "experiment_id": experiment_id,
            "decision": verdict.decision,
            "p_value": verdict.p_value,
        },
    )
    return measured


async def cancel(tx: Tx, experiment: ExperimentRecord, *, actor: str, reason: str) -> None:
    """Stop an active experiment without a decision (``ab.completed`` keep, cancelled)."""
    check_transition(experiment.state, ExperimentState.CANCELLED)
    measured = await measure(tx, experiment)
    experiment_id, model_name = experiment.experiment_id, experiment.model_name
    await _end(
        tx,
        experiment,
        measured,
        state=ExperimentState.CANCELLED,
        decision="keep",
        winner=None,
        promotion=None,
        actor=actor,
        reason=reason,
        audit_reason=f"experiment {experiment_id} cancelled: {reason}",
    )
    await tx.queue(
        ab_completed(experiment, measured.verdict, measured.per_arm, winner=None, cancelled=True)
    )
    EXPERIMENTS_ENDED.labels(model_name, "cancelled").inc()


async def cancel_active(tx: Tx, model_name: str, reason: str) -> None:
    """Production changed outside the experiment: its comparison is void, cancel it."""
    active = await tx.experiments.active(model_name)
    if active is not None:
        await cancel(tx, active, actor=AUTO_CANCEL_ACTOR, reason=reason)
