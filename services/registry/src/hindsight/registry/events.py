"""The events the registry publishes, each built once as its model and queued in the outbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from hindsight.common.events import AbCompleted, ModelDeployed
from hindsight.registry.domain import CONTROL, ArmMetrics, TestDecision
from hindsight.registry.storage import ExperimentRecord, Tx, VersionRecord

__all__ = ["SOURCE", "ab_completed", "queue_deployed"]

SOURCE = "registry"


async def queue_deployed(
    tx: Tx,
    version: VersionRecord,
    stage: Literal["production", "canary", "shadow", "retired"],
    *,
    previous_version: str | None = None,
    experiment_id: str | None = None,
    traffic: dict[str, float] | None = None,
) -> ModelDeployed:
    """Queue ``model.deployed`` for ``version`` in ``tx``; its deployment_id is its outbox id."""
    outbox_id = await tx.next_outbox_id()
    event = ModelDeployed.create(
        source=SOURCE,
        model_name=version.model_name,
        version=version.version,
        stage=stage,
        artifact_uri=version.artifact_uri,
        sha256=version.sha256,
        previous_version=previous_version,
        experiment_id=experiment_id,
        traffic=traffic,
        # Unique per stage change: a rollback to a version deployed minutes ago is not
        # dropped by JetStream as a duplicate of that earlier event.
        deployment_id=f"registry-{outbox_id}",
    )
    await tx.queue(event, outbox_id=outbox_id)
    return event


def ab_completed(
    experiment: ExperimentRecord,
    verdict: TestDecision,
    per_arm: Mapping[str, ArmMetrics],
    *,
    winner: str | None,
    cancelled: bool = False,
) -> AbCompleted:
    """``ab.completed`` of an experiment's end; a cancelled one says keep, without a winner.

    Extras beyond the contract: ``kind``, ``arms`` (arm -> version) and ``cancelled``.
    """
    arms = {
        arm: experiment.control_version if arm == CONTROL else experiment.candidate_version
        for arm in per_arm
    }
    extras: dict[str, object] = {"kind": experiment.kind.value, "arms": arms}
    if cancelled:
        extras["cancelled"] = True
    return AbCompleted.create(
        source=SOURCE,
        experiment_id=experiment.experiment_id,
        model_name=experiment.model_name,
        decision="keep" if cancelled else verdict.decision,
        winner=None if cancelled else winner,
        p_value=verdict.p_value,
        per_arm={arm: metrics.finite() for arm, metrics in per_arm.items()},
        n=sum(metrics.n for metrics in per_arm.values()),
        **extras,
    )
