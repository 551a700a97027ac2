"""Ingestion of the evidence: ``prediction.logged`` and ``signal.outcome`` into their tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hindsight.common.events import PredictionLogged, SignalOutcome
from hindsight.registry.metrics import (
    PREDICTION_BATCH_SIZE,
    PREDICTIONS_DUPLICATE,
    PREDICTIONS_INGESTED,
)
from hindsight.registry.storage import Outcome, PredictionsStored, Store

__all__ = ["Ingest"]

logger = logging.getLogger(__name__)

_WIN = {"win": 1, "loss": 0, "breakeven": 0}


class Ingest:
    """Stores predictions and outcomes, idempotently (redeliveries and replays change nothing)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle_predictions(self, events: Sequence[PredictionLogged]) -> PredictionsStored:
        """Store a batch of ``prediction.logged`` (idempotent by prediction_id)."""
        if not events:
            return PredictionsStored(new=0, joined=0)
        outcomes = self.store.tables.outcomes
        stored = await outcomes.insert_predictions(events)
        if stored.new > stored.joined:
            # The insert saw only outcomes committed before it began: one committed while it
            # ran woke the evaluator before these predictions were visible. Asked again after
            # our commit, one of the two always sees the other (no evaluable pair left asleep).
            later = await outcomes.with_result([e.signal_id for e in events])
            stored = PredictionsStored(new=stored.new, joined=max(stored.joined, later))
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
        await self.store.tables.outcomes.upsert_outcome(
            Outcome(
                signal_id=event.signal_id,
                result=event.result,
                win=_WIN[event.result] if event.result else None,
                closed_at=event.closed_at,
            )
        )
        return event.result is not None
