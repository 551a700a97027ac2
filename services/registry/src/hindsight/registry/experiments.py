"""Experiments (canary / A-B / shadow), outcome-joined evaluation and degradation rollbacks.

Every experiment transition, its audit row and its events (``model.deployed`` on start,
``ab.completed`` on the end, the promotion's ``model.deployed`` when applied) commit in one
transaction through the outbox, like the registry's stage changes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hindsight.common.artifacts import validate_name
from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.common.events import (
    AbCompleted,
    Event,
    ModelDeployed,
    PredictionLogged,
    SignalOutcome,
)
from hindsight.registry.domain import (
    CONTROL,
    ConflictError,
    DegradationCheck,
    DegradationPolicy,
    ExperimentKind,
    ExperimentState,
    PromotionState,
    Stage,
    TestDecision,
    arm_metrics,
    arms,
    check_approvable,
    check_candidate,
    check_degradation,
    check_transition,
    decide,
    expected_performance,
    resolve_share,
    should_end,
    traffic,
)
from hindsight.registry.metrics import (
    DEGRADATION_ROLLBACKS,
    EXPERIMENTS_ENDED,
    EXPERIMENTS_STARTED,
    PREDICTION_BATCH_SIZE,
    PREDICTIONS_DUPLICATE,
    PREDICTIONS_INGESTED,
    PROMOTIONS,
    ROLLBACKS,
    ROLLING_BRIER,
    ROLLING_WIN_RATE,
    export_experiments,
    export_production,
)
from hindsight.registry.service import Registry
from hindsight.registry.storage import PredictionsStored, Tx

__all__ = [
    "DEGRADATION_ACTOR",
    "EVALUATOR_ACTOR",
    "ExperimentLimits",
    "Experiments",
]

logger = logging.getLogger(__name__)

EVALUATOR_ACTOR = "registry:evaluator"
DEGRADATION_ACTOR = "registry:degradation"
_WIN = {"win": 1, "loss": 0, "breakeven": 0}


class ExperimentLimits:
    """When the background evaluator gives up on an experiment."""

    def __init__(self, *, max_duration_s: float, max_samples_per_arm: int) -> None:
        self.max_duration_s = max_duration_s
        self.max_samples_per_arm = max_samples_per_arm


async def _queue(tx: Tx, model: type[Event], payload: dict[str, Any]) -> None:
    """Validate an event now (a bug fails the transaction, not the relay) and queue it."""
    model.create(source="registry", **payload)
    await tx.outbox(model.subject, payload)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Experiments:
    """Use cases of experiments and of the degradation monitor over the registry's storage."""

    def __init__(
        self,
        registry: Registry,
        *,
        auto_promote_default: bool,
        limits: ExperimentLimits,
        degradation: DegradationPolicy,
        auto_rollback: bool,
    ) -> None:
        self.registry = registry
        self.storage = registry.storage
        self.auto_promote_default = auto_promote_default
        self.limits = limits
        self.degradation = degradation
        self.auto_rollback = auto_rollback
        registry.on_production_change = self._cancel_active

    # --- lifecycle ----------------------------------------------------------------------

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
    ) -> dict[str, Any]:
        """Start an experiment of ``candidate_version`` against production; 409 when busy."""
        validate_name(model_name, field="model_name")
        validate_name(candidate_version, field="candidate_version")
        share = resolve_share(kind, candidate_share)
        if min_samples_per_arm < 2:
            raise InvalidInputError("must be >= 2", field="min_samples_per_arm")
        if not 0 < alpha < 1:
            raise InvalidInputError("must be > 0 and < 1", field="alpha")
        experiment_id = f"exp-{uuid.uuid4().hex[:16]}"
        auto = self.auto_promote_default if auto_promote is None else auto_promote
        async with self.storage.locked(model_name) as tx:
            active = await tx.active_experiment(model_name)
            if active is not None:
                raise ConflictError(
                    f"{model_name} already has an active experiment {active['experiment_id']}"
                )
            candidate = await tx.version(model_name, candidate_version)
            if candidate is None:
                raise NotFoundError(f"{model_name}/{candidate_version} is not registered")
            production = await tx.production(model_name)
            check_candidate(
                candidate=candidate_version,
                candidate_stage=Stage(candidate["stage"]),
                production=production["version"] if production else None,
            )
            assert production is not None
            control = production["version"]
            await tx.insert_experiment(
                {
                    "experiment_id": experiment_id,
                    "model_name": model_name,
                    "kind": kind.value,
                    "control_version": control,
                    "candidate_version": candidate_version,
                    "candidate_share": share,
                    "min_samples_per_arm": min_samples_per_arm,
                    "alpha": alpha,
                    "auto_promote": auto,
                    "started_by": actor,
                }
            )
            split = f"{share:.0%} of traffic" if share is not None else "shadow scoring"
            await tx.audit(
                actor=actor,
                action="experiment_start",
                model_name=model_name,
                version=candidate_version,
                from_stage=Stage(candidate["stage"]),
                to_stage=Stage(candidate["stage"]),
                reason=f"{kind} experiment {experiment_id}: {candidate_version} vs {control}, "
                f"{split}" + (f": {reason}" if reason else ""),
                experiment_id=experiment_id,
                from_state=None,
                to_state=ExperimentState.ACTIVE,
            )
            await _queue(
                tx,
                ModelDeployed,
                {
                    "model_name": model_name,
                    "version": candidate_version,
                    "stage": "shadow" if kind is ExperimentKind.SHADOW else "canary",
                    "artifact_uri": candidate["artifact_uri"],
                    "sha256": candidate["sha256"],
                    "experiment_id": experiment_id,
                    "traffic": traffic(control, candidate_version, share),
                    "occurred_at": _now(),
                }
                if share is not None
                else {
                    "model_name": model_name,
                    "version": candidate_version,
                    "stage": "shadow",
                    "artifact_uri": candidate["artifact_uri"],
                    "sha256": candidate["sha256"],
                    "experiment_id": experiment_id,
                    "occurred_at": _now(),
                },
            )
        EXPERIMENTS_STARTED.labels(model_name, kind.value).inc()
        self.registry.notify()
        logger.info(
            "experiment started",
            extra={"experiment_id": experiment_id, "model_name": model_name, "kind": kind.value},
        )
        return await self.get(experiment_id)

    async def _evaluate(
        self, experiment: dict[str, Any], tx: Tx | None = None
    ) -> tuple[dict[str, Any], TestDecision]:
        """Per-arm metrics and the test's verdict for an experiment (now)."""
        kind = ExperimentKind(experiment["kind"])
        control_arm, cand_arm = arms(kind)
        samples = {}
        for arm in (control_arm, cand_arm):
            if tx is not None:
                samples[arm] = await tx.arm_samples(experiment, arm)
            else:
                samples[arm] = await self.storage.arm_samples(experiment, arm)
        verdict = decide(
            samples[control_arm],
            samples[cand_arm],
            min_samples=experiment["min_samples_per_arm"],
            alpha=experiment["alpha"],
        )
        per_arm = {
            arm: {
                "version": experiment["control_version"]
                if arm == CONTROL
                else experiment["candidate_version"],
                **arm_metrics(*samples[arm]).as_dict(),
            }
            for arm in (control_arm, cand_arm)
        }
        return per_arm, verdict

    async def get(self, experiment_id: str) -> dict[str, Any]:
        """One experiment with live per-arm metrics, the test now, and its audit rows."""
        experiment = await self.storage.experiment(experiment_id)
        if experiment is None:
            raise NotFoundError(f"experiment {experiment_id} not found")
        per_arm, verdict = await self._evaluate(experiment)
        experiment["live"] = {"per_arm": per_arm, "test": verdict.as_dict()}
        experiment["audit"] = await self.storage.experiment_audit(experiment_id)
        return experiment

    async def list_experiments(
        self, *, model_name: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Experiments, newest first."""
        if state is not None and state not in {s.value for s in ExperimentState}:
            raise InvalidInputError("must be active, completed or cancelled", field="state")
        return await self.storage.experiments(model_name=model_name, state=state)

    async def _model_of(self, experiment_id: str) -> str:
        experiment = await self.storage.experiment(experiment_id)
        if experiment is None:
            raise NotFoundError(f"experiment {experiment_id} not found")
        return str(experiment["model_name"])

    async def complete(
        self, experiment_id: str, *, actor: str, reason: str = "completed on request"
    ) -> dict[str, Any]:
        """Evaluate now, decide, publish ``ab.completed`` (and promote when auto_promote)."""
        model_name = await self._model_of(experiment_id)
        async with self.storage.locked(model_name) as tx:
            experiment = await tx.experiment(experiment_id)
            assert experiment is not None
            await self._complete_in_tx(tx, experiment, actor=actor, reason=reason)
        self.registry.notify()
        return await self.get(experiment_id)

    async def _complete_in_tx(
        self, tx: Tx, experiment: dict[str, Any], *, actor: str, reason: str
    ) -> TestDecision:
        check_transition(ExperimentState(experiment["state"]), ExperimentState.COMPLETED)
        per_arm, verdict = await self._evaluate(experiment, tx)
        winner = {
            "candidate": experiment["candidate_version"],
            "control": experiment["control_version"],
            None: None,
        }[verdict.winner]
        promotion = PromotionState.PENDING.value if verdict.decision == "promote" else None
        experiment_id, model_name = experiment["experiment_id"], experiment["model_name"]
        result = {"per_arm": per_arm, "test": verdict.as_dict()}
        await tx.end_experiment(
            experiment_id,
            state=ExperimentState.COMPLETED,
            decision=verdict.decision,
            winner=winner,
            p_value=verdict.p_value,
            result=result,
            promotion=promotion,
            ended_by=actor,
            reason=reason,
        )
        stage = await self._candidate_stage(tx, experiment)
        await tx.audit(
            actor=actor,
            action="experiment_complete",
            model_name=model_name,
            version=experiment["candidate_version"],
            from_stage=stage,
            to_stage=stage,
            reason=f"experiment {experiment_id} decided {verdict.decision}: {verdict.reason} "
            f"({reason})",
            experiment_id=experiment_id,
            from_state=ExperimentState.ACTIVE,
            to_state=ExperimentState.COMPLETED,
        )
        await _queue(tx, AbCompleted, self._ab_completed(experiment, verdict, per_arm, winner))
        EXPERIMENTS_ENDED.labels(model_name, verdict.decision).inc()
        logger.info(
            "experiment completed",
            extra={
                "experiment_id": experiment_id,
                "decision": verdict.decision,
                "p_value": verdict.p_value,
            },
        )
        if verdict.decision == "promote" and experiment["auto_promote"]:
            await self._apply_promotion(tx, experiment, actor=actor, verdict_reason=verdict.reason)
        return verdict

    @staticmethod
    def _ab_completed(
        experiment: dict[str, Any],
        verdict: TestDecision,
        per_arm: dict[str, dict[str, Any]],
        winner: str | None,
        *,
        cancelled: bool = False,
    ) -> dict[str, Any]:
        finite = {
            arm: {
                k: float(v)
                for k, v in m.items()
                if k != "version" and v is not None and isinstance(v, int | float)
            }
            for arm, m in per_arm.items()
        }
        payload: dict[str, Any] = {
            "experiment_id": experiment["experiment_id"],
            "model_name": experiment["model_name"],
            "decision": "keep" if cancelled else verdict.decision,
            "winner": None if cancelled else winner,
            "p_value": verdict.p_value,
            "per_arm": finite,
            "n": int(sum(int(m["n"]) for m in per_arm.values())),
            "kind": experiment["kind"],
            "arms": {arm: m["version"] for arm, m in per_arm.items()},
            "occurred_at": _now(),
        }
        if cancelled:
            payload["cancelled"] = True
        return {k: v for k, v in payload.items() if v is not None}

    @staticmethod
    async def _candidate_stage(tx: Tx, experiment: dict[str, Any]) -> Stage:
        row = await tx.version(experiment["model_name"], experiment["candidate_version"])
        return Stage(row["stage"]) if row else Stage.CANDIDATE

    async def _apply_promotion(
        self, tx: Tx, experiment: dict[str, Any], *, actor: str, verdict_reason: str
    ) -> str | None:
        """Promote the candidate through the existing promotion path; None when applied.

        Otherwise the promotion is marked stale and the reason returned: production is no
        longer the experiment's control, or the candidate cannot move to production any more.
        """
        model_name, experiment_id = experiment["model_name"], experiment["experiment_id"]
        production = await tx.production(model_name)
        problem: str | None = None
        if production is None or production["version"] != experiment["control_version"]:
            problem = (
                f"production is now {production['version'] if production else None}, not "
                f"{experiment['control_version']}: the experiment's decision is stale"
            )
        else:
            try:
                async with tx.conn.transaction():  # savepoint: a refusal leaves no trace
                    # The experiment's outcomes are the evidence: offline gates do not veto
                    # it (a failed gate is still written into the audit reason).
                    await self.registry.promote_in_tx(
                        tx,
                        model_name,
                        experiment["candidate_version"],
                        actor=actor,
                        reason=f"experiment {experiment_id}: {verdict_reason}",
                        force=True,
                        experiment_id=experiment_id,
                    )
            except ConflictError as exc:
                problem = str(exc)
        if problem is not None:
            await tx.set_promotion(experiment_id, PromotionState.STALE)
            logger.warning(
                "experiment promotion not applied: %s",
                problem,
                extra={"experiment_id": experiment_id},
            )
            return problem
        await tx.set_promotion(experiment_id, PromotionState.APPLIED)
        PROMOTIONS.labels(model_name, "experiment").inc()
        return None

    async def approve(
        self, experiment_id: str, *, actor: str, reason: str = "approved"
    ) -> dict[str, Any]:
        """Apply a completed experiment's pending ``promote`` decision."""
        model_name = await self._model_of(experiment_id)
        async with self.storage.locked(model_name) as tx:
            experiment = await tx.experiment(experiment_id)
            assert experiment is not None
            check_approvable(
                ExperimentState(experiment["state"]),
                experiment["decision"],
                experiment["promotion"],
            )
            stage = await self._candidate_stage(tx, experiment)
            await tx.audit(
                actor=actor,
                action="experiment_approve",
                model_name=model_name,
                version=experiment["candidate_version"],
                from_stage=stage,
                to_stage=stage,
                reason=f"experiment {experiment_id} promotion approved: {reason}",
                experiment_id=experiment_id,
                from_state=ExperimentState.COMPLETED,
                to_state=ExperimentState.COMPLETED,
            )
            problem = await self._apply_promotion(
                tx, experiment, actor=actor, verdict_reason=f"approved ({reason})"
            )
        self.registry.notify()
        if problem is not None:
            raise ConflictError(f"promotion not applied: {problem}")
        return await self.get(experiment_id)

    async def cancel(
        self, experiment_id: str, *, actor: str, reason: str = "cancelled on request"
    ) -> dict[str, Any]:
        """Stop an active experiment without a decision (``ab.completed`` keep, cancelled)."""
        model_name = await self._model_of(experiment_id)
        async with self.storage.locked(model_name) as tx:
            experiment = await tx.experiment(experiment_id)
            assert experiment is not None
            await self._cancel_in_tx(tx, experiment, actor=actor, reason=reason)
        self.registry.notify()
        return await self.get(experiment_id)

    async def _cancel_in_tx(
        self, tx: Tx, experiment: dict[str, Any], *, actor: str, reason: str
    ) -> None:
        check_transition(ExperimentState(experiment["state"]), ExperimentState.CANCELLED)
        per_arm, verdict = await self._evaluate(experiment, tx)
        experiment_id, model_name = experiment["experiment_id"], experiment["model_name"]
        await tx.end_experiment(
            experiment_id,
            state=ExperimentState.CANCELLED,
            decision="keep",
            winner=None,
            p_value=verdict.p_value,
            result={"per_arm": per_arm, "test": verdict.as_dict()},
            promotion=None,
            ended_by=actor,
            reason=reason,
        )
        stage = await self._candidate_stage(tx, experiment)
        await tx.audit(
            actor=actor,
            action="experiment_cancel",
            model_name=model_name,
            version=experiment["candidate_version"],
            from_stage=stage,
            to_stage=stage,
            reason=f"experiment {experiment_id} cancelled: {reason}",
            experiment_id=experiment_id,
            from_state=ExperimentState.ACTIVE,
            to_state=ExperimentState.CANCELLED,
        )
        await _queue(
            tx, AbCompleted, self._ab_completed(experiment, verdict, per_arm, None, cancelled=True)
        )
        EXPERIMENTS_ENDED.labels(model_name, "cancelled").inc()

    async def _cancel_active(self, tx: Tx, model_name: str, reason: str) -> None:
        """Production changed outside the experiment: its comparison is void, cancel it."""
        active = await tx.active_experiment(model_name)
        if active is not None:
            await self._cancel_in_tx(tx, active, actor="registry:auto", reason=reason)

    # --- background evaluator -----------------------------------------------------------

    async def evaluate_active(self) -> list[dict[str, Any]]:
        """End active experiments that are decided, out of time or out of samples."""
        ended = []
        live = []  # still active after this pass: their gauges (dashboard "Experiments")
        now = datetime.now(UTC)
        for experiment in await self.storage.experiments(state=ExperimentState.ACTIVE):
            per_arm, verdict = await self._evaluate(experiment)
            live.append((experiment, per_arm, verdict))
            control_arm, cand_arm = arms(ExperimentKind(experiment["kind"]))
            if not should_end(
                verdict,
                n_control=int(per_arm[control_arm]["n"]),
                n_candidate=int(per_arm[cand_arm]["n"]),
                elapsed_s=(now - experiment["started_at"]).total_seconds(),
                max_duration_s=self.limits.max_duration_s,
                max_samples_per_arm=self.limits.max_samples_per_arm,
            ):
                continue
            try:
                async with self.storage.locked(experiment["model_name"]) as tx:
                    current = await tx.experiment(experiment["experiment_id"])
                    if current is None or current["state"] != ExperimentState.ACTIVE:
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
            self.registry.notify()
            ended.append(experiment)
            live.pop()
        export_experiments(live)
        return ended

    # --- degradation monitor ------------------------------------------------------------

    async def check_degradation(self, *, apply: bool = True) -> list[dict[str, Any]]:
        """Rolling win rate and Brier of every production version; roll back when degraded."""
        results = []
        rows = await self.storage.production_cards()
        export_production((row["model_name"], row["version"]) for row in rows)
        for row in rows:
            name, version = row["model_name"], row["version"]
            y, p = await self.storage.rolling_samples(version, self.degradation.window)
            check = check_degradation(y, p, expected_performance(row.get("card")), self.degradation)
            if check.win_rate is not None and check.brier is not None:
                ROLLING_WIN_RATE.labels(name, version).set(check.win_rate)
                ROLLING_BRIER.labels(name, version).set(check.brier)
            entry = {"model_name": name, "version": version, **check.as_dict()}
            if check.degraded and apply:
                entry["action"] = await self._degraded(name, version, check)
            results.append(entry)
        return results

    async def _degraded(self, model_name: str, version: str, check: DegradationCheck) -> str:
        if not self.auto_rollback:
            logger.warning(
                "production degraded (auto rollback off): %s",
                check.summary(),
                extra={"model_name": model_name, "version": version},
            )
            return "alert_only"
        async with self.storage.locked(model_name) as tx:
            production = await tx.production(model_name)
            if production is None or production["version"] != version:
                return "production_changed"
            if await tx.degradation_recorded(model_name, version):
                return "already_rolled_back"
            try:
                target: str | None = await self.registry.rollback_in_tx(
                    tx,
                    model_name,
                    actor=DEGRADATION_ACTOR,
                    reason=f"degraded: {check.summary()}",
                )
            except ConflictError as exc:
                target = None
                logger.error(
                    "production degraded but cannot roll back: %s",
                    exc,
                    extra={"model_name": model_name, "version": version},
                )
            await tx.record_degradation(model_name, version, target, check.as_dict())
        if target is None:
            return "no_rollback_target"
        ROLLBACKS.labels(model_name).inc()
        DEGRADATION_ROLLBACKS.labels(model_name).inc()
        self.registry.notify()
        logger.warning(
            "production degraded: rolled back",
            extra={"model_name": model_name, "version": version, "restored": target},
        )
        return f"rolled_back_to:{target}"

    # --- consumers ----------------------------------------------------------------------

    async def handle_predictions(self, events: Sequence[PredictionLogged]) -> PredictionsStored:
        """Store a batch of ``prediction.logged`` (idempotent by prediction_id)."""
        if not events:
            return PredictionsStored(new=0, joined=0)
        stored = await self.storage.insert_predictions(events)
        PREDICTION_BATCH_SIZE.observe(len(events))
        PREDICTIONS_INGESTED.inc(stored.new)
        PREDICTIONS_DUPLICATE.inc(len(events) - stored.new)
        logger.debug(
            "predictions stored",
            extra={"batch": len(events), "new": stored.new, "joined": stored.joined},
        )
        return stored

    async def handle_outcome(self, event: SignalOutcome) -> bool:
        """Store a ``signal.outcome`` (idempotent by signal_id); True when it has a result."""
        await self.storage.upsert_outcome(
            {
                "signal_id": event.signal_id,
                "result": event.result,
                "win": _WIN[event.result] if event.result else None,
                "closed_at": event.closed_at,
            }
        )
        return event.result is not None
