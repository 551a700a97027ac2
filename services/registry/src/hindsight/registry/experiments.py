"""Experiments (canary / A-B / shadow): start, read, complete, approve, cancel, evaluate.

Every transition, its audit row and its events (``model.deployed`` on start,
``ab.completed`` on the end, the promotion's ``model.deployed`` when applied) commit in one
transaction through the outbox, like the registry's stage changes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from hindsight.common.artifacts import validate_name
from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.registry import experiment_results
from hindsight.registry.domain import (
    ConflictError,
    ExperimentKind,
    ExperimentState,
    PromotionState,
    arms,
    check_approvable,
    check_candidate,
    resolve_share,
    should_end,
    traffic,
)
from hindsight.registry.events import queue_deployed
from hindsight.registry.metrics import EXPERIMENTS_STARTED, PROMOTIONS, export_experiments
from hindsight.registry.promotion import Promotions
from hindsight.registry.storage import (
    AuditRecord,
    ExperimentRecord,
    ExperimentResult,
    NewExperiment,
    Store,
    Tx,
)

__all__ = ["EVALUATOR_ACTOR", "ExperimentDetail", "ExperimentLimits", "Experiments"]

logger = logging.getLogger(__name__)

EVALUATOR_ACTOR = "registry:evaluator"


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentLimits:
    """When the background evaluator gives up on an experiment."""

    max_duration_s: float
    max_samples_per_arm: int


class ExperimentDetail(ExperimentRecord):
    """An experiment with its live per-arm metrics and test, and its audit rows."""

    live: ExperimentResult
    audit: list[AuditRecord]


class Experiments:
    """Use cases of experiments; ``notify`` wakes the outbox relay after a commit."""

    def __init__(
        self,
        store: Store,
        promotions: Promotions,
        *,
        auto_promote_default: bool,
        limits: ExperimentLimits,
        notify: Callable[[], None],
    ) -> None:
        self.store = store
        self.promotions = promotions
        self.auto_promote_default = auto_promote_default
        self.limits = limits
        self.notify = notify

    async def start(
        self,
        *,
        model_name: str,
        kind: ExperimentKind,
        candidate_version: str,
        candidate_share: float | None,
        min_samples_per_arm: int,
        alpha: float,
        auto_promote: bool | None,
        actor: str,
        reason: str | None = None,
    ) -> ExperimentDetail:
        """Start an experiment of ``candidate_version`` against production; 409 when busy."""
        validate_name(model_name, field="model_name")
        validate_name(candidate_version, field="candidate_version")
        share = resolve_share(kind, candidate_share)
        if min_samples_per_arm < 2:
            raise InvalidInputError("must be >= 2", field="min_samples_per_arm")
        if not 0 < alpha < 1:
            raise InvalidInputError("must be > 0 and < 1", field="alpha")
        experiment_id = f"exp-{uuid.uuid4().hex[:16]}"
        async with self.store.locked(model_name) as tx:
            active = await tx.experiments.active(model_name)
            if active is not None:
                raise ConflictError(
                    f"{model_name} already has an active experiment {active.experiment_id}"
                )
            candidate = await tx.versions.get(model_name, candidate_version, lock=True)
            if candidate is None:
                raise NotFoundError(f"{model_name}/{candidate_version} is not registered")
            production = await tx.versions.production(model_name)
            check_candidate(
                candidate=candidate_version,
                candidate_stage=candidate.stage,
                production=production.version if production else None,
            )
            assert production is not None
            control = production.version
            await tx.experiments.insert(
                NewExperiment(
                    experiment_id=experiment_id,
                    model_name=model_name,
                    kind=kind,
                    control_version=control,
                    candidate_version=candidate_version,
                    candidate_share=share,
                    min_samples_per_arm=min_samples_per_arm,
                    alpha=alpha,
                    auto_promote=self.auto_promote_default
                    if auto_promote is None
                    else auto_promote,
                    started_by=actor,
                )
            )
            split = f"{share:.0%} of traffic" if share is not None else "shadow scoring"
            await tx.audit.append(
                actor=actor,
                action="experiment_start",
                model_name=model_name,
                version=candidate_version,
                from_stage=candidate.stage,
                to_stage=candidate.stage,
                reason=f"{kind} experiment {experiment_id}: {candidate_version} vs {control}, "
                f"{split}" + (f": {reason}" if reason else ""),
                experiment_id=experiment_id,
                from_state=None,
                to_state=ExperimentState.ACTIVE,
            )
            await queue_deployed(
                tx,
                candidate,
                "shadow" if share is None else "canary",
                experiment_id=experiment_id,
                traffic=traffic(control, candidate_version, share),
            )
        EXPERIMENTS_STARTED.labels(model_name, kind.value).inc()
        self.notify()
        logger.info(
            "experiment started",
            extra={"experiment_id": experiment_id, "model_name": model_name, "kind": kind.value},
        )
        return await self.get(experiment_id)

    async def get(self, experiment_id: str) -> ExperimentDetail:
        """One experiment with live per-arm metrics, the test now, and its audit rows."""
        tables = self.store.tables
        experiment = await tables.experiments.get(experiment_id)
        if experiment is None:
            raise NotFoundError(f"experiment {experiment_id} not found")
        measured = await experiment_results.measure(tables, experiment)
        return ExperimentDetail(
            **dict(experiment),
            live=measured.result(),
            audit=await tables.audit.of_experiment(experiment_id),
        )

    async def list_experiments(
        self, *, model_name: str | None = None, state: str | None = None
    ) -> list[ExperimentRecord]:
        """Experiments, newest first."""
        if state is not None and state not in {s.value for s in ExperimentState}:
            raise InvalidInputError("must be active, completed or cancelled", field="state")
        return await self.store.tables.experiments.find(
            model_name=model_name, state=ExperimentState(state) if state else None
        )

    @asynccontextmanager
    async def _locked(self, experiment_id: str) -> AsyncIterator[tuple[Tx, ExperimentRecord]]:
        """A transaction holding the experiment's model lock, and the experiment read in it."""
        found = await self.store.tables.experiments.get(experiment_id)
        if found is None:
            raise NotFoundError(f"experiment {experiment_id} not found")
        async with self.store.locked(found.model_name) as tx:
            experiment = await tx.experiments.get(experiment_id, lock=True)
            assert experiment is not None  # experiments are never deleted
            yield tx, experiment

    async def complete(
        self, experiment_id: str, *, actor: str, reason: str = "completed on request"
    ) -> ExperimentDetail:
        """Evaluate now, decide, publish ``ab.completed`` (and promote when auto_promote)."""
        async with self._locked(experiment_id) as (tx, experiment):
            await self._complete_in_tx(tx, experiment, actor=actor, reason=reason)
        self.notify()
        return await self.get(experiment_id)

    async def _complete_in_tx(
        self, tx: Tx, experiment: ExperimentRecord, *, actor: str, reason: str
    ) -> None:
        measured = await experiment_results.complete(tx, experiment, actor=actor, reason=reason)
        if measured.verdict.decision == "promote" and experiment.auto_promote:
            await self._apply_promotion(
                tx, experiment, actor=actor, verdict_reason=measured.verdict.reason
            )

    async def _apply_promotion(
        self, tx: Tx, experiment: ExperimentRecord, *, actor: str, verdict_reason: str
    ) -> str | None:
        """Promote the candidate through the normal promotion path; None when applied.

        Otherwise the promotion is marked stale and the reason returned: production is no
        longer the experiment's control, or the candidate cannot move to production any more.
        """
        model_name, experiment_id = experiment.model_name, experiment.experiment_id
        production = await tx.versions.production(model_name)
        problem: str | None = None
        if production is None or production.version != experiment.control_version:
            problem = (
                f"production is now {production.version if production else None}, not "
                f"{experiment.control_version}: the experiment's decision is stale"
            )
        else:
            try:
                async with tx.savepoint():  # a refusal leaves no trace
                    # The experiment's outcomes are the evidence: offline gates do not veto
                    # it (a failed gate is still written into the audit reason).
                    await self.promotions.promote_in_tx(
                        tx,
                        model_name,
                        experiment.candidate_version,
                        actor=actor,
                        reason=f"experiment {experiment_id}: {verdict_reason}",
                        force=True,
                        experiment_id=experiment_id,
                    )
            except ConflictError as exc:
                problem = str(exc)
        if problem is not None:
            await tx.experiments.set_promotion(experiment_id, PromotionState.STALE)
            logger.warning(
                "experiment promotion not applied: %s",
                problem,
                extra={"experiment_id": experiment_id},
            )
            return problem
        await tx.experiments.set_promotion(experiment_id, PromotionState.APPLIED)
        PROMOTIONS.labels(model_name, "experiment").inc()
        return None

    async def approve(
        self, experiment_id: str, *, actor: str, reason: str = "approved"
    ) -> ExperimentDetail:
        """Apply a completed experiment's pending ``promote`` decision."""
        async with self._locked(experiment_id) as (tx, experiment):
            check_approvable(experiment.state, experiment.decision, experiment.promotion)
            await experiment_results.audit(
                tx,
                experiment,
                actor=actor,
                action="experiment_approve",
                reason=f"experiment {experiment_id} promotion approved: {reason}",
                to_state=ExperimentState.COMPLETED,
            )
            problem = await self._apply_promotion(
                tx, experiment, actor=actor, verdict_reason=f"approved ({reason})"
            )
        self.notify()
        if problem is not None:
            raise ConflictError(f"promotion not applied: {problem}")
        return await self.get(experiment_id)

    async def cancel(
        self, experiment_id: str, *, actor: str, reason: str = "cancelled on request"
    ) -> ExperimentDetail:
        """Stop an active experiment without a decision (``ab.completed`` keep, cancelled)."""
        async with self._locked(experiment_id) as (tx, experiment):
            await experiment_results.cancel(tx, experiment, actor=actor, reason=reason)
        self.notify()
        return await self.get(experiment_id)

    async def evaluate_active(self) -> list[ExperimentRecord]:
        """End active experiments that are decided, out of time or out of samples."""
        ended: list[ExperimentRecord] = []
        live = []  # still active after this pass: their gauges (dashboard "Experiments")
        now = datetime.now(UTC)
        tables = self.store.tables
        for experiment in await tables.experiments.find(state=ExperimentState.ACTIVE):
            measured = await experiment_results.measure(tables, experiment)
            live.append(measured)
            control_arm, candidate_arm = arms(experiment.kind)
            verdict = measured.verdict
            if not should_end(
                verdict,
                n_control=measured.per_arm[control_arm].n,
                n_candidate=measured.per_arm[candidate_arm].n,
                elapsed_s=(now - experiment.started_at).total_seconds(),
                max_duration_s=self.limits.max_duration_s,
                max_samples_per_arm=self.limits.max_samples_per_arm,
            ):
                continue
            try:
                async with self.store.locked(experiment.model_name) as tx:
                    current = await tx.experiments.get(experiment.experiment_id, lock=True)
                    if current is None or current.state is not ExperimentState.ACTIVE:
                        continue
                    await self._complete_in_tx(
                        tx,
                        current,
                        actor=EVALUATOR_ACTOR,
                        reason="decided by the evaluator"
                        if verdict.decision != "inconclusive"
                        else "maximum duration or sample reached",
                    )
            except ConflictError as exc:  # e.g. a stale promotion: logged, retried next tick
                logger.warning("experiment not completed: %s", exc)
                continue
            self.notify()
            ended.append(experiment)
            live.pop()
        export_experiments((m.experiment, m.per_arm, m.verdict) for m in live)
        return ended
