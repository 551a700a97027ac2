"""Ingestion: validated events → idempotent upserts, deriving missing outcome results.

Signals and outcomes arrive in batches (one JetStream fetch): each batch is one multi-row
upsert, so ingest keeps up with a market instead of paying a round trip per event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from hindsight.common.events import LabelSaved, SignalFeatures, SignalOutcome
from hindsight.common.feature_schema import check_features, require_features
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.domain.outcomes import resolve_result, threshold_for
from hindsight.trainer.metrics import ROWS_INGESTED, SCHEMA_CHECKS
from hindsight.trainer.schemas import RegistrySchemas
from hindsight.trainer.storage import OutcomeRow, Storage

__all__ = ["Ingestor"]

logger = logging.getLogger(__name__)


def _count(subject: str, *, received: int, written: int) -> None:
    ROWS_INGESTED.labels(subject, "true").inc(written)
    ROWS_INGESTED.labels(subject, "false").inc(received - written)


def _newest_signals(events: Sequence[SignalFeatures]) -> dict[str, SignalFeatures]:
    """One event per signal_id: the first of the newest occurred_at, as one by one would keep."""
    kept: dict[str, SignalFeatures] = {}
    for event in events:
        old = kept.get(event.signal_id)
        if old is None or old.occurred_at < event.occurred_at:
            kept[event.signal_id] = event
    return kept


def _replaces(old: OutcomeRow, new: OutcomeRow) -> bool:
    """The storage's rule, applied inside a batch: newer, or bringing the missing result."""
    return old.event.occurred_at < new.event.occurred_at or (
        old.result is None and new.result is not None
    )


class Ingestor:
    """The handlers' logic; every method is idempotent (at-least-once delivery)."""

    def __init__(
        self,
        storage: Storage,
        settings: TrainerSettings,
        *,
        observe: Callable[[SignalFeatures], None] | None = None,
        schemas: RegistrySchemas | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.observe = observe
        self.schemas = schemas

    def _threshold(self, timeframe: str) -> float:
        return threshold_for(
            timeframe, self.settings.outcome_thresholds, self.settings.outcome_threshold
        )

    async def on_signals(self, events: Sequence[SignalFeatures]) -> None:
        """Upsert a batch of signals; derive the results of outcomes that were waiting."""
        if not events:
            return
        await self._check_schemas(events)
        kept = _newest_signals(events)
        written = await self.storage.upsert_signals(list(kept.values()))
        _count(SignalFeatures.subject, received=len(events), written=len(written))
        if self.observe is not None:
            # Only new rows: a redelivered signal must not count twice in the drift window.
            for signal_id, event in kept.items():
                if signal_id in written:
                    self.observe(event)
        await self._derive_pending(kept)

    async def _check_schemas(self, events: Sequence[SignalFeatures]) -> None:
        """Raise InvalidInputError naming ``features.<name>`` (→ DLQ) when an event does not
        match its registered feature schema, before anything is written: the batch is then
        retried event by event, so only the bad ones go to the DLQ. Unknown schema or
        registry unreachable: accepted, counted."""
        if self.schemas is None:
            SCHEMA_CHECKS.labels("disabled").inc(len(events))
            return
        counts = {"ok": 0, "unknown_schema": 0, "registry_unreachable": 0}
        for event in events:
            state, schema = await self.schemas.get(event.feature_schema_version)
            if schema is None:
                key = "unknown_schema" if state == "unknown" else "registry_unreachable"
                counts[key] += 1
            elif check_features(schema, event.features):
                if len(events) == 1:  # counted once: a bigger batch is retried one by one
                    SCHEMA_CHECKS.labels("rejected").inc()
                require_features(schema, event.features)
            else:
                counts["ok"] += 1
        for result, n in counts.items():
            SCHEMA_CHECKS.labels(result).inc(n)

    async def on_outcomes(self, events: Sequence[SignalOutcome]) -> None:
        """Upsert a batch of outcomes with their results (given, derived, or pending).

        Raises InvalidInputError (→ DLQ) when a result can never be derived, before
        anything is written: the batch is then retried event by event, so only that one
        goes to the DLQ.
        """
        if not events:
            return
        refs = await self.storage.signal_refs({e.signal_id for e in events})
        kept: dict[str, OutcomeRow] = {}
        default = self.settings.outcome_threshold
        for event in events:
            ref = refs.get(event.signal_id)
            resolved = resolve_result(
                result=event.result,
                side=None if ref is None else ref.side,
                outcome_entry=event.entry_price,
                signal_entry=None if ref is None else ref.entry_price,
                exit_price=event.exit_price,
                threshold=self._threshold(ref.timeframe) if ref else default,
            )
            row = OutcomeRow(event, resolved.result, resolved.derived)
            old = kept.get(event.signal_id)
            if old is None or _replaces(old, row):
                kept[event.signal_id] = row
        written = await self.storage.upsert_outcomes(list(kept.values()))
        _count(SignalOutcome.subject, received=len(events), written=len(written))
        pending = [signal_id for signal_id, row in kept.items() if row.result is None]
        if pending:
            # The signal may have been written while this outcome was: both handlers
            # re-read after their own write, so one of them sees the other's row.
            await self._derive_pending(pending)

    async def _derive_pending(self, signal_ids: Collection[str]) -> None:
        results: dict[str, str] = {}
        for pending in await self.storage.pending_outcomes(signal_ids):
            try:
                resolved = resolve_result(
                    result=None,
                    side=pending.signal.side,
                    outcome_entry=pending.entry_price,
                    signal_entry=pending.signal.entry_price,
                    exit_price=pending.exit_price,
                    threshold=self._threshold(pending.signal.timeframe),
                )
            except Exception as exc:  # the outcome stays pending; the signal itself is fine
                logger.warning("outcome of %s cannot be derived: %s", pending.signal_id, exc)
                continue
            if resolved.result is not None:
                results[pending.signal_id] = resolved.result
        await self.storage.set_results(results)

    async def on_label(self, event: LabelSaved) -> None:
        """Keep the latest label per (trade, labeler)."""
        written = await self.storage.upsert_label(event)
        ROWS_INGESTED.labels(event.subject, str(written).lower()).inc()
