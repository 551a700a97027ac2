"""PostgreSQL side of market (schema ``market``, migrations in ``../migrations``).

``bars`` holds the bar statements (bars, corrections, gaps, clusters), ``signals`` the
Back-Labeler's (pending signals, labels); the outbox is the shared one of
:mod:`hindsight.common.outbox`. :class:`Storage` holds the pool
(:class:`~hindsight.common.db.DatabasePart` opens it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hindsight.common.errors import UnavailableError
from hindsight.common.outbox import OutboxTable
from hindsight.market.storage.bars import BarTable
from hindsight.market.storage.records import (
    BarIn,
    ClusterRecord,
    CorrectionMark,
    Derived,
    GapRecord,
    LabelRecord,
    LabelRow,
    PendingSignal,
    StoredBar,
    StoredLabel,
)
from hindsight.market.storage.signals import SignalTable

__all__ = [
    "MIGRATIONS",
    "OUTBOX",
    "SCHEMA",
    "BarIn",
    "BarTable",
    "ClusterRecord",
    "CorrectionMark",
    "Derived",
    "GapRecord",
    "LabelRecord",
    "LabelRow",
    "PendingSignal",
    "SignalTable",
    "Storage",
    "StoredBar",
    "StoredLabel",
]

SCHEMA = "market"
MIGRATIONS = Path(__file__).parent.parent / "migrations"
OUTBOX = OutboxTable(body_column="body", keep_sent=True)
"""``signal.labeled``; published rows keep ``sent_at`` (what went out, when)."""


class Storage:
    """The pool (set by DatabasePart) and the tables' statements."""

    def __init__(self, pool: Any = None) -> None:
        self.pool: Any = pool
        self.bars = BarTable()
        self.signals = SignalTable()

    async def ping(self) -> None:
        """Readiness: the database answers."""
        if self.pool is None:
            raise UnavailableError("database pool not open")
        try:
            await self.pool.fetchval("SELECT 1")
        except Exception as exc:
            raise UnavailableError(f"database: {exc}") from exc
