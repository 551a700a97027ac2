"""The one path by which a version reaches or leaves production.

Promotion (API, auto-promotion, experiment), rollback (API, degradation monitor): stage
moves, audit rows and ``model.deployed`` events, all inside the caller's locked transaction.
Whoever must know that production changed (experiments compare against it) is handed in
as ``on_production_change`` at construction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hindsight.common.errors import NotFoundError
from hindsight.registry.domain import (
    ConflictError,
    GatePolicy,
    Stage,
    check_move,
    evaluate_version_gates,
    gates_passed,
    rollback_target,
)
from hindsight.registry.events import queue_deployed
from hindsight.registry.storage import Tx, VersionRecord

__all__ = ["ProductionChanged", "Promotions"]

ProductionChanged = Callable[[Tx, str, str], Awaitable[None]]
"""Called as ``(tx, model_name, reason)`` inside the transaction that changes production."""


class Promotions:
    """Stage changes that touch production, under :class:`GatePolicy`."""

    def __init__(self, *, policy: GatePolicy, on_production_change: ProductionChanged) -> None:
        self.policy = policy
        self.on_production_change = on_production_change

    async def to_production(
        self,
        tx: Tx,
        version: VersionRecord,
        production: VersionRecord | None,
        *,
        actor: str,
        action: str,
        reason: str,
        experiment_id: str | None = None,
    ) -> None:
        """Replace ``production`` by ``version``: stage moves, audit rows, outbox events."""
        name = version.model_name
        previous = production.version if production else None
        # An experiment compares a candidate with the production that is being replaced.
        await self.on_production_change(
            tx, name, f"production changed to {version.version} ({action})"
        )
        if previous is not None:
            await tx.versions.set_stage(name, previous, Stage.ARCHIVED)  # one production at a time
            await tx.audit.append(
                actor=actor,
                action=action,
                model_name=name,
                version=previous,
                from_stage=Stage.PRODUCTION,
                to_stage=Stage.ARCHIVED,
                reason=f"replaced by {version.version}: {reason}",
                experiment_id=experiment_id,
            )
        await tx.versions.set_stage(name, version.version, Stage.PRODUCTION)
        await tx.audit.append(
            actor=actor,
            action=action,
            model_name=name,
            version=version.version,
            from_stage=version.stage,
            to_stage=Stage.PRODUCTION,
            reason=reason if previous is None else f"{reason} (replaces {previous})",
            experiment_id=experiment_id,
        )
        await queue_deployed(tx, version, "production", previous_version=previous)
        if production is not None:
            await queue_deployed(tx, production, "retired")

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
        """Move a version to production (or staging); failed gates need ``force``.

        Re-evaluates the gates against the current production and stores the verdict.
        Returns True when the move was forced past failed gates.
        """
        row = await tx.versions.get(model_name, version, lock=True)
        if row is None:
            raise NotFoundError(f"{model_name}/{version} is not registered")
        check_move(row.stage, stage)
        production = await tx.versions.production(model_name)
        # A family's gates read its members from the card; a model's need its headline only.
        carded = await tx.versions.with_card(model_name, version) if row.kind == "family" else None
        checks = evaluate_version_gates(
            row.kind,
            carded.card if carded else None,
            row.headline,
            self.policy,
            current_production=production.version if production else None,
        )
        passed = gates_passed(checks)
        await tx.versions.set_gates(model_name, version, checks, passed)
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
            await self.to_production(
                tx,
                row,
                production,
                actor=actor,
                action="promote",
                reason=reason,
                experiment_id=experiment_id,
            )
        else:
            await tx.versions.set_stage(model_name, version, stage)
            await tx.audit.append(
                actor=actor,
                action="promote",
                model_name=model_name,
                version=version,
                from_stage=row.stage,
                to_stage=stage,
                reason=reason,
            )
        return forced

    async def rollback_in_tx(self, tx: Tx, model_name: str, *, actor: str, reason: str) -> str:
        """The previous production version serves again; returns it. 409 when there is none."""
        production = await tx.versions.production(model_name)
        if production is None:
            raise ConflictError(f"{model_name} has no production version to roll back")
        target = rollback_target(
            await tx.audit.history(model_name),
            current=production.version,
            stages=await tx.versions.stages(model_name),
        )
        if target is None:
            raise ConflictError(f"{model_name} has no earlier production version to roll back to")
        row = await tx.versions.get(model_name, target, lock=True)
        assert row is not None
        await self.to_production(
            tx,
            row,
            production,
            actor=actor,
            action="rollback",
            reason=f"rollback from {production.version}: {reason}",
        )
        return target
