"""The degradation monitor: production's rolling win rate and Brier against its own card.

A degraded production version is rolled back (at most once per version) through the
normal rollback path when ``auto_rollback`` is on, else only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict

from hindsight.registry.domain import (
    ConflictError,
    DegradationCheck,
    DegradationPolicy,
    check_degradation,
    expected_performance,
)
from hindsight.registry.metrics import (
    DEGRADATION_ROLLBACKS,
    ROLLBACKS,
    ROLLING_BRIER,
    ROLLING_WIN_RATE,
    export_production,
)
from hindsight.registry.promotion import Promotions
from hindsight.registry.storage import DegradationRollback, Store

__all__ = [
    "DEGRADATION_ACTOR",
    "DegradationMonitor",
    "DegradationReport",
    "MonitorAction",
    "ProductionHealth",
]

logger = logging.getLogger(__name__)

DEGRADATION_ACTOR = "registry:degradation"


class ProductionHealth(BaseModel):
    """A production version's rolling numbers against its card, now."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    n: int
    enough: bool
    """As many outcomes as the window: only then can it be degraded."""
    win_rate: float | None
    brier: float | None
    expected_win_rate: float | None
    expected_brier: float | None
    degraded: bool
    reasons: list[str]

    @classmethod
    def of(cls, model_name: str, version: str, check: DegradationCheck) -> ProductionHealth:
        """The health of a version from the monitor's check."""
        return cls(model_name=model_name, version=version, **asdict(check))


class DegradationReport(BaseModel):
    """Every production version's rolling numbers and the monitor's past rollbacks."""

    model_config = ConfigDict(frozen=True)

    production: list[ProductionHealth]
    rollbacks: list[DegradationRollback]


@dataclass(frozen=True, slots=True)
class MonitorAction:
    """What the monitor did about a degraded version."""

    model_name: str
    version: str
    action: str
    """``rolled_back_to:<version>``, ``alert_only``, ``already_rolled_back``,
    ``production_changed`` or ``no_rollback_target``."""


class DegradationMonitor:
    """Checks every production version; ``notify`` wakes the outbox relay after a rollback."""

    def __init__(
        self,
        store: Store,
        promotions: Promotions,
        *,
        policy: DegradationPolicy,
        auto_rollback: bool,
        notify: Callable[[], None],
    ) -> None:
        self.store = store
        self.promotions = promotions
        self.policy = policy
        self.auto_rollback = auto_rollback
        self.notify = notify

    async def _checks(self) -> list[tuple[str, str, DegradationCheck]]:
        tables = self.store.tables
        cards = await tables.versions.production_cards()
        export_production((card.model_name, card.version) for card in cards)
        checks = []
        for card in cards:
            samples = await tables.outcomes.rolling_samples(
                card.model_name, card.version, self.policy.window
            )
            check = check_degradation(
                samples.y, samples.p, expected_performance(card.card), self.policy
            )
            if check.win_rate is not None and check.brier is not None:
                ROLLING_WIN_RATE.labels(card.model_name, card.version).set(check.win_rate)
                ROLLING_BRIER.labels(card.model_name, card.version).set(check.brier)
            checks.append((card.model_name, card.version, check))
        return checks

    async def report(self) -> DegradationReport:
        """The numbers now (nothing is rolled back) and past rollbacks."""
        return DegradationReport(
            production=[ProductionHealth.of(*c) for c in await self._checks()],
            rollbacks=await self.store.tables.degradation.all(),
        )

    async def check(self) -> list[MonitorAction]:
        """Check every production version and act on the degraded ones."""
        actions = []
        for model_name, version, check in await self._checks():
            if check.degraded:
                action = await self._degraded(model_name, version, check)
                actions.append(MonitorAction(model_name, version, action))
        return actions

    async def _degraded(self, model_name: str, version: str, check: DegradationCheck) -> str:
        if not self.auto_rollback:
            logger.warning(
                "production degraded (auto rollback off): %s",
                check.summary(),
                extra={"model_name": model_name, "version": version},
            )
            return "alert_only"
        async with self.store.locked(model_name) as tx:
            production = await tx.versions.production(model_name)
            if production is None or production.version != version:
                return "production_changed"
            if await tx.degradation.recorded(model_name, version):
                return "already_rolled_back"
            try:
                target: str | None = await self.promotions.rollback_in_tx(
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
            await tx.degradation.record(model_name, version, target, check)
        if target is None:
            return "no_rollback_target"
        ROLLBACKS.labels(model_name).inc()
        DEGRADATION_ROLLBACKS.labels(model_name).inc()
        self.notify()
        logger.warning(
            "production degraded: rolled back",
            extra={"model_name": model_name, "version": version, "restored": target},
        )
        return f"rolled_back_to:{target}"
