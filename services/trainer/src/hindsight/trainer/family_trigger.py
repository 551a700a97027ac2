"""Data-triggered runs of model families: enough new Back-Labeler labels, or a quiet flow.

The same rule as single models' (``domain.autotrain.data_run_due``), counted on a family's
labels (``signal.labeled`` rows of its signals, new or revised) instead of outcomes:

* ``fresh``: labels since the family's newest run that trained or tried to;
* ``pending``: labels since its newest run whose release the registry accepted.

A run is due when ``fresh >= family_auto_train_labels``, or when labels went quiet for
``auto_train_quiet_s`` with ``fresh > 0`` and ``pending`` at least ``min_new_outcomes``
(``min_rows`` while no release was accepted); at most one per ``auto_train_interval_s``.
A run after an accepted release continues it (incremental), else trains from scratch.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hindsight.trainer.domain.autotrain import DataPolicy, DataState, data_run_due
from hindsight.trainer.domain.family_spec import FamilySpec
from hindsight.trainer.family_storage import FamilyStorage
from hindsight.trainer.runs import RunService
from hindsight.trainer.storage import TrainingRun

__all__ = ["FamilyDataTrigger"]


class FamilyDataTrigger:
    """Starts a family's data-triggered run through the run service when one is due."""

    def __init__(self, runs: RunService, storage: FamilyStorage) -> None:
        self.runs = runs
        self.storage = storage

    @property
    def enabled(self) -> bool:
        """True when families are declared and ``family_auto_train_labels`` is set."""
        return self.runs.families is not None and self.runs.settings.family_auto_train_labels > 0

    def families(self) -> list[str]:
        """The declared families, by name."""
        return [] if self.runs.families is None else sorted(self.runs.families.families)

    async def state(self, spec: FamilySpec) -> DataState:
        """The label counts the rule decides on (the run rows as single models count them)."""
        name = spec.family
        accepted = await self.runs.production.accepted_versions(name)
        base = await self.runs.storage.last_accepted_at(name, accepted)
        last_try = await self.runs.storage.last_attempt_at(name)
        pending = await self.storage.labels_since(base, spec)
        fresh = pending if last_try == base else await self.storage.labels_since(last_try, spec)
        return DataState(
            pending=pending,
            fresh=fresh,
            has_accepted=base is not None,
            newest_outcome_at=await self.storage.latest_label_at(spec),
            has_attempt=last_try is not None,
            base="the last accepted release" if accepted is not None else "the last completed run",
        )

    async def request_if_due(
        self, family: str, *, now: datetime | None = None
    ) -> TrainingRun | None:
        """Start a data-triggered run of ``family`` when one is due; None when not."""
        settings = self.runs.settings
        spec = self.runs.families.get(family) if self.runs.families is not None else None
        if spec is None:
            raise ValueError(f"family: {family!r} is not a declared family")
        if settings.family_auto_train_labels <= 0 or self.runs.is_running(family):
            return None
        now = now or datetime.now(UTC)
        latest = await self.runs.storage.list_runs(model_name=family, limit=1)
        if latest and (now - latest[0].created_at).total_seconds() < settings.auto_train_interval_s:
            return None
        state = await self.state(spec)
        policy = DataPolicy(
            outcomes=settings.family_auto_train_labels,
            quiet_s=settings.auto_train_quiet_s,
            min_new_outcomes=settings.min_new_outcomes,
            min_rows=settings.min_rows,
            what="labels",
        )
        reason = data_run_due(state, policy, now=now)
        if reason is None:
            return None
        return await self.runs.request(
            model_name=family,
            mode="incremental" if state.has_accepted else "full",
            trigger="data",
            reason=reason,
        )
