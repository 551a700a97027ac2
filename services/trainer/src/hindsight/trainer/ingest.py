"""Ingestion: validated events → idempotent upserts, deriving missing outcome results."""

from __future__ import annotations

import logging
from collections.abc import Callable

from hindsight.common.events import LabelSaved, SignalFeatures, SignalOutcome
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.domain.outcomes import resolve_result, threshold_for
from hindsight.trainer.metrics import ROWS_INGESTED
from hindsight.trainer.storage import Storage

__all__ = ["Ingestor"]

logger = logging.getLogger(__name__)


class Ingestor:
    """The handlers' logic; every method is idempotent (at-least-once delivery)."""

    def __init__(
        self,
        storage: Storage,
        settings: TrainerSettings,
        *,
        observe: Callable[[SignalFeatures], None] | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.observe = observe

    def _threshold(self, timeframe: str) -> float:
        return threshold_for(
            timeframe, self.settings.outcome_thresholds, self.settings.outcome_threshold
        )

    async def on_signal(self, event: SignalFeatures) -> None:
        """Upsert the signal; derive the result of an outcome that was waiting for it."""
        written = await self.storage.upsert_signal(event)
        ROWS_INGESTED.labels(event.subject, str(written).lower()).inc()
        if written and self.observe is not None:
            # Only new rows: a redelivered signal must not count twice in the drift window.
            self.observe(event)
        await self._derive_pending(event.signal_id)

    async def on_outcome(self, event: SignalOutcome) -> None:
        """Upsert the outcome with its result (given, derived, or pending its signal).

        Raises InvalidInputError (→ DLQ) when the result can never be derived.
        """
        ref = await self.storage.signal_ref(event.signal_id)
        resolved = resolve_result(
            result=event.result,
            side=None if ref is None else ref.side,
            outcome_entry=event.entry_price,
            signal_entry=None if ref is None else ref.entry_price,
            exit_price=event.exit_price,
            threshold=self._threshold(ref.timeframe) if ref else self.settings.outcome_threshold,
        )
        written = await self.storage.upsert_outcome(
            event, result=resolved.result, derived=resolved.derived
        )
        ROWS_INGESTED.labels(event.subject, str(written).lower()).inc()
        if resolved.result is None:
            # The signal may have been written while this outcome was: both handlers
            # re-read after their own write, so one of them sees the other's row.
            await self._derive_pending(event.signal_id)

    async def _derive_pending(self, signal_id: str) -> None:
        pending = await self.storage.pending_outcome(signal_id)
        if pending is None:
            return
        ref = await self.storage.signal_ref(signal_id)
        if ref is None:
            return
        entry, exit_price = pending
        try:
            resolved = resolve_result(
                result=None,
                side=ref.side,
                outcome_entry=entry,
                signal_entry=ref.entry_price,
                exit_price=exit_price,
                threshold=self._threshold(ref.timeframe),
            )
        except Exception as exc:  # the outcome stays pending; the signal itself is fine
            logger.warning("outcome of %s cannot be derived: %s", signal_id, exc)
            return
        if resolved.result is not None:
            await self.storage.set_result(signal_id, resolved.result)

    async def on_label(self, event: LabelSaved) -> None:
        """Keep the latest label per (trade, labeler)."""
        written = await self.storage.upsert_label(event)
        ROWS_INGESTED.labels(event.subject, str(written).lower()).inc()
