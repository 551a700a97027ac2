"""Ingestion of the Back-Labeler's ``signal.labeled``: batches → one idempotent upsert each.

One row per ``(signal_id, label_spec)``. A relabel of the same key (after a bar
correction) carries a higher ``label_revision`` and replaces the row; at the same revision
the newer ``occurred_at`` wins; a redelivery or an older copy changes nothing. The
label's signal may arrive later: the join happens when a family trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hindsight.common.events import SignalLabeled
from hindsight.trainer.family_storage import FamilyStorage
from hindsight.trainer.metrics import ROWS_INGESTED

__all__ = ["LabelsIngestor"]


def _order(event: SignalLabeled) -> tuple[int, datetime]:
    return event.label_revision, event.occurred_at


class LabelsIngestor:
    """The ``signal.labeled`` handler's logic; idempotent (at-least-once delivery)."""

    def __init__(self, storage: FamilyStorage) -> None:
        self.storage = storage

    async def on_labels(self, events: Sequence[SignalLabeled]) -> None:
        """Upsert a batch of labels: per key the highest revision, then the newest (the
        first of equals, as one by one would keep)."""
        if not events:
            return
        kept: dict[tuple[str, str], SignalLabeled] = {}
        for event in events:
            key = (event.signal_id, event.label_spec)
            old = kept.get(key)
            if old is None or _order(old) < _order(event):
                kept[key] = event
        written = await self.storage.upsert_signal_labels(list(kept.values()))
        ROWS_INGESTED.labels(SignalLabeled.subject, "true").inc(len(written))
        ROWS_INGESTED.labels(SignalLabeled.subject, "false").inc(len(events) - len(written))
