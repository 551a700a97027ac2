"""The registry's use cases: register a trained version, promote, roll back, archive.

Every stage change, its audit rows and the ``model.deployed`` events to publish commit in
one transaction (the outbox); :mod:`hindsight.registry.messaging` relays the events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hindsight.common.artifacts import (
    ONNX_FILE,
    load_card,
    resolve_artifact,
    sha256_file,
    validate_name,
)
from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.common.events import MODEL_DEPLOYED, TrainingCompleted
from hindsight.registry.domain import (
    ConflictError,
    GatePolicy,
    Stage,
    check_move,
    evaluate_gates,
    gates_passed,
    headline,
    rollback_target,
)
from hindsight.registry.metrics import PROMOTIONS, REGISTRATIONS, ROLLBACKS
from hindsight.registry.storage import Storage, Tx

__all__ = ["AUTO_ACTOR", "Registry"]

logger = logging.getLogger(__name__)

AUTO_ACTOR = "registry:auto"


async def _nothing(tx: Tx, model_name: str, reason: str) -> None:
    """Default production-change hook (the experiments service replaces it)."""


class _Refused(Exception):
    """The artifact cannot become a promotable version; the message says why."""


def _inspect_artifact(directory: Path, event: TrainingCompleted) -> dict[str, Any]:
    """Hash model.onnx and read metrics.json; raises _Refused with the reason (blocking I/O)."""
    onnx = directory / ONNX_FILE
    if not onnx.is_file():
        raise _Refused(f"{ONNX_FILE} not found in {event.artifact_uri}")
    actual = sha256_file(onnx)
    if actual != event.sha256:
        raise _Refused(f"sha256 mismatch: event says {event.sha256}, {ONNX_FILE} has {actual}")
    try:
        card = load_card(directory)
    except (OSError, ValidationError, ValueError) as exc:
        raise _Refused(f"metrics.json unreadable: {' '.join(str(exc).split())[:500]}") from exc
    if (card.model_name, card.version) != (event.model_name, event.version):
        raise _Refused(
            f"metrics.json is for {card.model_name}/{card.version}, "
            f"event is for {event.model_name}/{event.version}"
        )
    if card.onnx_sha256 != actual:
        raise _Refused(f"metrics.json onnx_sha256 {card.onnx_sha256} != {ONNX_FILE} {actual}")
    return card.model_dump(mode="json")


def _deployed(
    row: dict[str, Any], stage: str, *, previous_version: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model_name": row["model_name"],
        "version": row["version"],
        "stage": stage,
        "artifact_uri": row["artifact_uri"],
        "sha256": row["sha256"],
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if previous_version is not None:
        payload["previous_version"] = previous_version
    return payload


class Registry:
    """Use cases over :class:`Storage`; ``notify`` wakes the outbox relay after a commit."""

    def __init__(
        self,
        storage: Storage,
        *,
        artifact_root: Path,
        policy: GatePolicy,
        manual_approval: bool,
        notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.storage = storage
        self.artifact_root = artifact_root
        self.policy = policy
        self.manual_approval = manual_approval
        self.notify = notify
        self.on_production_change: Callable[[Tx, str, str], Awaitable[None]] = _nothing

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
        await self.storage.record_run(
            {
                "training_run_id": event.training_run_id,
                "model_name": event.model_name,
                "status": event.status,
                "version": event.version,
                "error": event.error,
                "dataset_size": event.dataset_size,
                "duration_s": event.duration_s,
                "data_start": event.data_time_range.start if event.data_time_range else None,
                "data_end": event.data_time_range.end if event.data_time_range else None,
                "occurred_at": event.occurred_at,
            }
        )
        if event.status != "completed":
            REGISTRATIONS.labels("run_only").inc()
            return "run_only"
        assert event.version is not None
        if await self.storage.version_exists(event.model_name, event.version):
            REGISTRATIONS.labels("duplicate").inc()
            return "duplicate"
        try:
            card: dict[str, Any] | None = await asyncio.to_thread(
                _inspect_artifact, directory, event
            )
            refused: str | None = None
        except _Refused as exc:
            card, refused = None, str(exc)
        outcome = await self._register(event, card, refused)
        REGISTRATIONS.labels(outcome).inc()
        logger.info(
            "version registered",
            extra={"model_name": event.model_name, "version": event.version, "outcome": outcome},
        )
        return outcome

    async def _register(
        self, event: TrainingCompleted, card: dict[str, Any] | None, refused: str | None
    ) -> str:
        assert event.version is not None and event.artifact_uri is not None
        name, version = event.model_name, event.version
        head = headline(card) if card is not None else {}
        async with self.storage.locked(name) as tx:
            production = await tx.production(name)
            checks = evaluate_gates(
                head, self.policy, current_production=production["version"] if production else None
            )
            passed = refused is None and gates_passed(checks)
            created = datetime.fromisoformat(card["created_at"]) if card else event.occurred_at
            row = {
                "model_name": name,
                "version": version,
                "stage": Stage.REFUSED if refused else Stage.CANDIDATE,
                "training_run_id": event.training_run_id,
                "created_at": created,
                "artifact_uri": event.artifact_uri,
                "sha256": event.sha256,
                "card": card,
                "headline": head,
                "gates": [c.as_dict() for c in checks] if refused is None else [],
                "gates_passed": passed,
                "refused_reason": refused,
            }
            if not await tx.insert_version(row):
                return "duplicate"
            if refused is not None:
                await tx.audit(
                    actor=AUTO_ACTOR,
                    action="refuse",
                    model_name=name,
                    version=version,
                    from_stage=None,
                    to_stage=Stage.REFUSED,
                    reason=refused,
                )
                return "refused"
            await tx.audit(
                actor=AUTO_ACTOR,
                action="register",
                model_name=name,
                version=version,
                from_stage=None,
                to_stage=Stage.CANDIDATE,
                reason=f"training run {event.training_run_id} completed",
            )
            if not passed:
                return "candidate"
            if self.manual_approval:
                await tx.set_stage(name, version, Stage.STAGING)
                await tx.audit(
                    actor=AUTO_ACTOR,
                    action="stage",
                    model_name=name,
                    version=version,
                    from_stage=Stage.CANDIDATE,
                    to_stage=Stage.STAGING,
                    reason="gates passed; awaiting manual approval",
                )
                return "staging"
            row["stage"] = Stage.CANDIDATE
            await self._to_production(
                tx, row, production, actor=AUTO_ACTOR, action="promote", reason="gates passed"
            )
        PROMOTIONS.labels(name, "auto").inc()
        self.notify()
        return "production"

    async def _to_production(
        self,
        tx: Tx,
        row: dict[str, Any],
        production: dict[str, Any] | None,
        *,
        actor: str,
        action: str,
        reason: str,
        experiment_id: str | None = None,
    ) -> None:
        """Replace ``production`` by ``row``: stage moves, audit rows, outbox events."""
        name, version = row["model_name"], row["version"]
        previous = production["version"] if production else None
        # An experiment compares a candidate with the production that is being replaced.
        await self.on_production_change(tx, name, f"production changed to {version} ({action})")
        if previous is not None:
            await tx.set_stage(name, previous, Stage.ARCHIVED)  # first: one production at a time
            await tx.audit(
                actor=actor,
                action=action,
                model_name=name,
                version=previous,
                from_stage=Stage.PRODUCTION,
                to_stage=Stage.ARCHIVED,
                reason=f"replaced by {version}: {reason}",
                experiment_id=experiment_id,
            )
        await tx.set_stage(name, version, Stage.PRODUCTION)
        await tx.audit(
            actor=actor,
            action=action,
            model_name=name,
            version=version,
            from_stage=Stage(row["stage"]),
            to_stage=Stage.PRODUCTION,
            reason=reason if previous is None else f"{reason} (replaces {previous})",
            experiment_id=experiment_id,
        )
        await tx.outbox(MODEL_DEPLOYED, _deployed(row, "production", previous_version=previous))
        if production is not None:
            await tx.outbox(MODEL_DEPLOYED, _deployed(production, "retired"))

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
    ) -> dict[str, Any]:
        """Move a version to production (or staging); failed gates need ``force``."""
        validate_name(model_name, field="model_name")
        validate_name(version, field="version")
        async with self.storage.locked(model_name) as tx:
            forced = await self.promote_in_tx(
                tx, model_name, version, actor=actor, reason=reason, force=force, stage=stage
            )
        if stage is Stage.PRODUCTION:
            PROMOTIONS.labels(model_name, "forced" if forced else "api").inc()
            self.notify()
        return await self._get(model_name, version)

    async def promote_in_tx(
        self,
        tx: Tx,
        model_name: str,
        version: str,
        *,
        actor: str,
        reason: str,
        force: bool = False,
        stage: Stage = Stage.PRODUCTION,
        experiment_id: str | None = None,
    ) -> bool:
        """:meth:`promote` inside a caller's locked transaction; True when forced past gates."""
        row = await tx.version(model_name, version)
        if row is None:
            raise NotFoundError(f"{model_name}/{version} is not registered")
        current = Stage(row["stage"])
        check_move(current, stage)
        production = await tx.production(model_name)
        checks = evaluate_gates(
            row["headline"],
            self.policy,
            current_production=production["version"] if production else None,
        )
        passed = gates_passed(checks)
        await tx.set_gates(model_name, version, [c.as_dict() for c in checks], passed)
        failing = "; ".join(c.reason for c in checks if not c.passed)
        forced = False
        if stage is Stage.PRODUCTION and not passed:
            if not force:
                raise ConflictError(
                    f"promotion gates failed ({failing}); send force=true to override"
                )
            forced = True
            reason = f"{reason} [forced past failed gates: {failing}]"
        if stage is Stage.PRODUCTION:
            await self._to_production(
                tx,
                row,
                production,
                actor=actor,
                action="promote",
                reason=reason,
                experiment_id=experiment_id,
            )
        else:
            await tx.set_stage(model_name, version, stage)
            await tx.audit(
                actor=actor,
                action="promote",
                model_name=model_name,
                version=version,
                from_stage=current,
                to_stage=stage,
                reason=reason,
            )
        return forced

    async def rollback(self, model_name: str, *, actor: str, reason: str) -> dict[str, Any]:
        """The previous production version serves again; the current one is archived."""
        validate_name(model_name, field="model_name")
        async with self.storage.locked(model_name) as tx:
            target = await self.rollback_in_tx(tx, model_name, actor=actor, reason=reason)
        ROLLBACKS.labels(model_name).inc()
        self.notify()
        return await self._get(model_name, target)

    async def rollback_in_tx(self, tx: Tx, model_name: str, *, actor: str, reason: str) -> str:
        """:meth:`rollback` inside a caller's locked transaction; returns the restored version."""
        production = await tx.production(model_name)
        if production is None:
            raise ConflictError(f"{model_name} has no production version to roll back")
        target = rollback_target(
            await tx.history(model_name),
            current=production["version"],
            stages=await tx.stages(model_name),
        )
        if target is None:
            raise ConflictError(f"{model_name} has no earlier production version to roll back to")
        row = await tx.version(model_name, target)
        assert row is not None
        await self._to_production(
            tx,
            row,
            production,
            actor=actor,
            action="rollback",
            reason=f"rollback from {production['version']}: {reason}",
        )
        return target

    async def archive(
        self, model_name: str, version: str, *, actor: str, reason: str
    ) -> dict[str, Any]:
        """Archive a version that is not in production (archiving twice changes nothing)."""
        validate_name(model_name, field="model_name")
        validate_name(version, field="version")
        async with self.storage.locked(model_name) as tx:
            row = await tx.version(model_name, version)
            if row is None:
                raise NotFoundError(f"{model_name}/{version} is not registered")
            current = Stage(row["stage"])
            if current is Stage.PRODUCTION:
                raise ConflictError(
                    f"{model_name}/{version} is in production: promote another version or "
                    "roll back first"
                )
            if current is not Stage.ARCHIVED:
                check_move(current, Stage.ARCHIVED)
                await tx.set_stage(model_name, version, Stage.ARCHIVED)
                await tx.audit(
                    actor=actor,
                    action="archive",
                    model_name=model_name,
                    version=version,
                    from_stage=current,
                    to_stage=Stage.ARCHIVED,
                    reason=reason,
                )
        return await self._get(model_name, version)

    # --- reads --------------------------------------------------------------------------

    async def _get(self, model_name: str, version: str) -> dict[str, Any]:
        row = await self.storage.version(model_name, version)
        if row is None:
            raise NotFoundError(f"{model_name}/{version} is not registered")
        return row

    async def version(self, model_name: str, version: str) -> dict[str, Any]:
        """One version with its full card; NotFoundError when unknown."""
        validate_name(model_name, field="model_name")
        validate_name(version, field="version")
        return await self._get(model_name, version)

    async def versions(self, model_name: str) -> list[dict[str, Any]]:
        """Versions of a known model; NotFoundError when it has none."""
        validate_name(model_name, field="model_name")
        rows = await self.storage.versions(model_name)
        if not rows:
            raise NotFoundError(f"model {model_name} has no versions")
        return rows

    async def audit(self, model_name: str) -> list[dict[str, Any]]:
        """Audit log of a known model."""
        validate_name(model_name, field="model_name")
        rows = await self.storage.audit_log(model_name)
        if not rows:
            raise NotFoundError(f"model {model_name} has no audit rows")
        return rows

    async def status(self) -> dict[str, Any]:
        """The learning status: counts, last runs, production, best candidates, data sizes."""
        counts = await self.storage.stage_counts()
        by_stage: dict[str, int] = {s.value: 0 for s in Stage}
        for c in counts:
            by_stage[c["stage"]] += int(c["n"])
        return {
            "versions_by_stage": by_stage,
            "versions_by_model": counts,
            "last_runs": await self.storage.recent_runs(),
            "production": await self.storage.deployments(),
            "best_candidates": await self.storage.best_candidates(),
            "dataset_sizes": await self.storage.dataset_sizes(),
            "outbox_pending": await self.storage.pending_outbox(),
            "manual_approval": self.manual_approval,
        }
