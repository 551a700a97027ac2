"""The registry's use cases: register a trained version, promote, roll back, archive, read.

Every stage change, its audit rows and the ``model.deployed`` events to publish commit in
one transaction (the outbox); the shared outbox relay publishes them after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from hindsight.common.artifacts import resolve_artifact, validate_name
from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.common.events import TrainingCompleted
from hindsight.registry.artifacts import (
    Inspected,
    Refused,
    check_event,
    inspect_artifact,
    kind_of,
)
from hindsight.registry.domain import (
    ConflictError,
    GateCheck,
    Headline,
    Stage,
    VersionKind,
    check_move,
    evaluate_version_gates,
    gates_passed,
    headline,
)
from hindsight.registry.metrics import PROMOTIONS, REGISTRATIONS, ROLLBACKS
from hindsight.registry.promotion import Promotions
from hindsight.registry.storage import (
    AuditRecord,
    DatasetSize,
    Deployment,
    EvaluationReport,
    ModelSummary,
    NewVersion,
    StageCount,
    Store,
    TrainingRun,
    VersionRecord,
    VersionWithCard,
)

__all__ = ["AUTO_ACTOR", "Registry", "RegistryStatus"]

logger = logging.getLogger(__name__)

AUTO_ACTOR = "registry:auto"


def _registered(run_id: str, kind: VersionKind, checks: list[GateCheck]) -> str:
    """The register audit row's reason: the run, the kind, and every failed gate by name."""
    what = "family release" if kind == "family" else "version"
    failed = "; ".join(c.reason for c in checks if not c.passed)
    verdict = f"gates failed: {failed}" if failed else "gates passed"
    return f"training run {run_id} completed ({what}); {verdict}"


class RegistryStatus(BaseModel):
    """The learning status: versions by stage, last runs, production, best candidates."""

    model_config = ConfigDict(frozen=True)

    versions_by_stage: dict[Stage, int]
    """Every stage, 0 included."""
    versions_by_model: list[StageCount]
    last_runs: list[TrainingRun]
    production: list[Deployment]
    best_candidates: list[VersionRecord]
    dataset_sizes: list[DatasetSize]
    """Per model, the latest completed run's."""
    outbox_pending: int
    manual_approval: bool


class Registry:
    """Use cases over :class:`Store`; ``notify`` wakes the outbox relay after a commit."""

    def __init__(
        self,
        store: Store,
        promotions: Promotions,
        *,
        artifact_root: Path,
        manual_approval: bool,
        notify: Callable[[], None],
    ) -> None:
        self.store = store
        self.promotions = promotions
        self.artifact_root = artifact_root
        self.manual_approval = manual_approval
        self.notify = notify

    # --- training.completed ------------------------------------------------------------

    async def handle_training_completed(self, event: TrainingCompleted) -> str:
        """Record the run; a completed one becomes a version. Returns the outcome."""
        validate_name(event.model_name, field="model_name")
        if event.status == "completed":
            for field in ("version", "artifact_uri", "sha256"):
                if getattr(event, field) is None:
                    raise InvalidInputError("required when status is completed", field=field)
            assert event.version is not None and event.artifact_uri is not None
            validate_name(event.version, field="version")
            directory = resolve_artifact(self.artifact_root, event.artifact_uri)
            kind = kind_of(self.artifact_root, directory)
            check_event(kind, event)
        span = event.data_time_range
        await self.store.tables.runs.record(
            TrainingRun(
                training_run_id=event.training_run_id,
                model_name=event.model_name,
                status=event.status,
                version=event.version,
                error=event.error,
                dataset_size=event.dataset_size,
                duration_s=event.duration_s,
                data_start=span.start if span else None,
                data_end=span.end if span else None,
                occurred_at=event.occurred_at,
            )
        )
        if event.status != "completed":
            REGISTRATIONS.labels("run_only").inc()
            return "run_only"
        assert event.version is not None
        if await self.store.tables.versions.exists(event.model_name, event.version):
            REGISTRATIONS.labels("duplicate").inc()
            return "duplicate"
        try:
            inspected: Inspected | None = await asyncio.to_thread(
                inspect_artifact, self.artifact_root, directory, kind, event
            )
            refused: str | None = None
        except Refused as exc:
            inspected, refused = None, str(exc)
        outcome = await self._register(event, kind, inspected, refused)
        REGISTRATIONS.labels(outcome).inc()
        logger.info(
            "version registered",
            extra={
                "model_name": event.model_name,
                "version": event.version,
                "kind": kind,
                "outcome": outcome,
            },
        )
        return outcome

    async def _register(
        self,
        event: TrainingCompleted,
        kind: VersionKind,
        inspected: Inspected | None,
        refused: str | None,
    ) -> str:
        assert event.version is not None and event.artifact_uri is not None
        assert event.sha256 is not None
        name, version = event.model_name, event.version
        card = inspected.card if inspected is not None else None
        head: Headline = headline(card) if card is not None else {}
        async with self.store.locked(name) as tx:
            others = await tx.versions.kinds(name) - {kind}
            if refused is None and others:
                # One name, one kind: a family and a single model never replace each other.
                refused = f"{name} holds {others.pop()} versions; a {kind} cannot join them"
                card, head = None, {}
            production = await tx.versions.production(name)
            checks = (
                evaluate_version_gates(
                    kind,
                    card,
                    head,
                    self.promotions.policy,
                    current_production=production.version if production else None,
                )
                if refused is None
                else []
            )
            passed = refused is None and gates_passed(checks)
            inserted = await tx.versions.insert(
                NewVersion(
                    model_name=name,
                    version=version,
                    kind=kind,
                    stage=Stage.REFUSED if refused else Stage.CANDIDATE,
                    training_run_id=event.training_run_id,
                    created_at=datetime.fromisoformat(card["created_at"])
                    if card
                    else event.occurred_at,
                    artifact_uri=event.artifact_uri,
                    sha256=event.sha256,
                    card=card,
                    headline=head,
                    gates=checks,
                    gates_passed=passed,
                    refused_reason=refused,
                )
            )
            if not inserted:
                return "duplicate"
            if refused is not None:
                await tx.audit.append(
                    actor=AUTO_ACTOR,
                    action="refuse",
                    model_name=name,
                    version=version,
                    from_stage=None,
                    to_stage=Stage.REFUSED,
                    reason=refused,
                )
                return "refused"
            await tx.audit.append(
                actor=AUTO_ACTOR,
                action="register",
                model_name=name,
                version=version,
                from_stage=None,
                to_stage=Stage.CANDIDATE,
                reason=_registered(event.training_run_id, kind, checks),
            )
            if not passed:
                return "candidate"
            if self.manual_approval:
                await tx.versions.set_stage(name, version, Stage.STAGING)
                await tx.audit.append(
                    actor=AUTO_ACTOR,
                    action="stage",
                    model_name=name,
                    version=version,
                    from_stage=Stage.CANDIDATE,
                    to_stage=Stage.STAGING,
                    reason="gates passed; awaiting manual approval",
                )
                return "staging"
            registered = await tx.versions.get(name, version, lock=True)
            assert registered is not None
            await self.promotions.to_production(
                tx,
                registered,
                production,
                actor=AUTO_ACTOR,
                action="promote",
                reason="gates passed",
            )
        PROMOTIONS.labels(name, "auto").inc()
        self.notify()
        return "production"

    # --- admin API ----------------------------------------------------------------------

    async def promote(
        self,
        model_name: str,
        version: str,
        *,
        actor: str,
        reason: str,
        force: bool = False,
        stage: Stage = Stage.PRODUCTION,
    ) -> VersionWithCard:
        """Move a version to production (or staging); failed gates need ``force``."""
        validate_name(model_name, field="model_name")
        validate_name(version, field="version")
        async with self.store.locked(model_name) as tx:
            forced = await self.promotions.promote_in_tx(
                tx, model_name, version, actor=actor, reason=reason, force=force, stage=stage
            )
        if stage is Stage.PRODUCTION:
            PROMOTIONS.labels(model_name, "forced" if forced else "api").inc()
            self.notify()
        return await self._get(model_name, version)

    async def rollback(self, model_name: str, *, actor: str, reason: str) -> VersionWithCard:
        """The previous production version serves again; the current one is archived."""
        validate_name(model_name, field="model_name")
        async with self.store.locked(model_name) as tx:
            target = await self.promotions.rollback_in_tx(
                tx, model_name, actor=actor, reason=reason
            )
        ROLLBACKS.labels(model_name).inc()
        self.notify()
        return await self._get(model_name, target)

    async def archive(
        self, model_name: str, version: str, *, actor: str, reason: str
    ) -> VersionWithCard:
        """Archive a version that is not in production (archiving twice changes nothing)."""
        validate_name(model_name, field="model_name")
        validate_name(version, field="version")
        async with self.store.locked(model_name) as tx:
            row = await tx.versions.get(model_name, version, lock=True)
            if row is None:
                raise NotFoundError(f"{model_name}/{version} is not registered")
            if row.stage is Stage.PRODUCTION:
                raise ConflictError(
                    f"{model_name}/{version} is in production: promote another version or "
                    "roll back first"
                )
            if row.stage is not Stage.ARCHIVED:
                check_move(row.stage, Stage.ARCHIVED)
                await tx.versions.set_stage(model_name, version, Stage.ARCHIVED)
                await tx.audit.append(
                    actor=actor,
                    action="archive",
                    model_name=model_name,
                    version=version,
                    from_stage=row.stage,
                    to_stage=Stage.ARCHIVED,
                    reason=reason,
                )
        return await self._get(model_name, version)

    # --- reads --------------------------------------------------------------------------

    async def _get(self, model_name: str, version: str) -> VersionWithCard:
        row = await self.store.tables.versions.with_card(model_name, version)
        if row is None:
            raise NotFoundError(f"{model_name}/{version} is not registered")
        return row

    async def version(self, model_name: str, version: str) -> VersionWithCard:
        """One version with its full card; NotFoundError when unknown."""
        validate_name(model_name, field="model_name")
        validate_name(version, field="version")
        return await self._get(model_name, version)

    async def versions(self, model_name: str) -> list[VersionRecord]:
        """Versions of a known model, newest first; NotFoundError when it has none."""
        validate_name(model_name, field="model_name")
        rows = await self.store.tables.versions.of_model(model_name)
        if not rows:
            raise NotFoundError(f"model {model_name} has no versions")
        return rows

    async def models(self) -> list[ModelSummary]:
        """Every model with its production version and number of versions."""
        return await self.store.tables.versions.models()

    async def deployments(self) -> list[Deployment]:
        """Every production version."""
        return await self.store.tables.versions.deployments()

    async def audit(self, model_name: str) -> list[AuditRecord]:
        """Audit log of a known model, oldest first."""
        validate_name(model_name, field="model_name")
        rows = await self.store.tables.audit.of_model(model_name)
        if not rows:
            raise NotFoundError(f"model {model_name} has no audit rows")
        return rows

    async def evaluation(self, model_name: str, start: datetime, end: datetime) -> EvaluationReport:
        """Prediction/outcome aggregates of a known model over ``[start, end)``."""
        if not await self.store.tables.versions.count(model_name):
            raise NotFoundError(f"model {model_name} has no versions")
        return await self.store.evaluation(model_name, start, end)

    async def status(self) -> RegistryStatus:
        """The learning status: counts, last runs, production, best candidates, data sizes."""
        tables = self.store.tables
        counts = await tables.versions.stage_counts()
        by_stage = dict.fromkeys(Stage, 0)
        for count in counts:
            by_stage[count.stage] += count.n
        return RegistryStatus(
            versions_by_stage=by_stage,
            versions_by_model=counts,
            last_runs=await tables.runs.recent(),
            production=await tables.versions.deployments(),
            best_candidates=await tables.versions.best_candidates(),
            dataset_sizes=await tables.runs.dataset_sizes(),
            outbox_pending=await self.store.outbox_pending(),
            manual_approval=self.manual_approval,
        )
