"""The ``degradation_rollbacks`` table: production versions the monitor rolled back (once)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

from hindsight.registry.domain import DegradationCheck
from hindsight.registry.storage.base import Executor, Row

__all__ = ["DegradationRollback", "DegradationRollbacks"]


class DegradationRollback(Row):
    """A version the monitor judged degraded, and what it restored (None: nothing to)."""

    model_name: str
    version: str
    at: datetime
    rolled_back_to: str | None
    details: DegradationCheck


class DegradationRollbacks:
    """Statements over ``degradation_rollbacks``."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def recorded(self, model_name: str, version: str) -> bool:
        """True when the monitor already rolled this version back."""
        found = await self.db.fetchval(
            "SELECT true FROM degradation_rollbacks WHERE model_name=$1 AND version=$2",
            model_name,
            version,
        )
        return bool(found)

    async def record(
        self, model_name: str, version: str, rolled_back_to: str | None, check: DegradationCheck
    ) -> None:
        """Remember a degradation verdict for a version (once)."""
        await self.db.execute(
            """INSERT INTO degradation_rollbacks (model_name, version, rolled_back_to, details)
               VALUES ($1,$2,$3,$4::jsonb) ON CONFLICT DO NOTHING""",
            model_name,
            version,
            rolled_back_to,
            json.dumps(asdict(check)),
        )

    async def all(self) -> list[DegradationRollback]:
        """Every version the monitor rolled back, oldest first."""
        rows = await self.db.fetch(
            "SELECT model_name, version, at, rolled_back_to, details "
            "FROM degradation_rollbacks ORDER BY at"
        )
        return [DegradationRollback.of(r, "details") for r in rows]
