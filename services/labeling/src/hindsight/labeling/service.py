"""Saving labels: file first, then the row (with its outbox event), then publish.

If the file cannot be written nothing else happens and the caller gets an error. If
publishing fails after the row is committed, the event stays in the outbox and the
shared outbox relay (:mod:`hindsight.common.outbox`) publishes it later (the same event,
so JetStream deduplicates a retry).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hindsight.common.errors import AlreadyExistsError, HindsightError, NotFoundError
from hindsight.common.events import LabelSaved
from hindsight.common.outbox import Publish
from hindsight.common.record_ids import image_vector_id
from hindsight.labeling.domain.labels import (
    STATUSES,
    Label,
    LabelRecord,
    agreement_rate,
    llm_agreed,
)
from hindsight.labeling.labelfiles import label_path, write_label_file
from hindsight.labeling.metrics import (
    AGREEMENT_RATIO,
    LABEL_WRITE_FAILURES,
    LABELS_TOTAL,
    QUEUE_ITEMS,
)
from hindsight.labeling.storage import QueueCounts, Storage

__all__ = ["LabelService", "LabelWriteError", "Publish", "UNDO_COMMENT", "Undone"]

logger = logging.getLogger(__name__)

SOURCE = "labeling"
UNDO_COMMENT = "undo: label withdrawn, back to review"


class LabelWriteError(HindsightError):
    """The label file could not be written; nothing was saved (HTTP 500)."""


@dataclass(frozen=True, slots=True)
class Undone:
    """An undone decision: its trade, and the label saved in its place."""

    trade_id: str
    restored: LabelRecord


def _event_from(record: LabelRecord) -> LabelSaved:
    return LabelSaved.create(
        source=SOURCE,
        occurred_at=record.timestamp,
        trade_id=record.trade_id,
        label=record.label,
        labeler_id=record.labeler_id,
        quality_grade=record.quality_grade,
        user_comment=record.user_comment,
        llm_agreed=record.llm_agreed,
        screenshot=record.screenshot,
        chroma_vector_id=record.chroma_vector_id,
    )


class LabelService:
    """Label, bulk label and undo, keeping file, row and event the same."""

    def __init__(self, storage: Storage, publish: Publish, *, labels_dir: Path) -> None:
        self.storage = storage
        self.publish = publish
        self.labels_dir = labels_dir
        # One save per trade at a time, so the file and the row end in the same order.
        self._locks: dict[str, asyncio.Lock] = {}

    async def save(
        self,
        *,
        trade_id: str,
        label: Label,
        labeler_id: str,
        quality_grade: str | None = None,
        user_comment: str | None = None,
        undoable: bool = True,
    ) -> LabelRecord:
        """Save one label; returns the record as written to the file."""
        lock = self._locks.setdefault(trade_id, asyncio.Lock())
        async with lock:
            return await self._save(
                trade_id=trade_id,
                label=label,
                labeler_id=labeler_id,
                quality_grade=quality_grade,
                user_comment=user_comment,
                undoable=undoable,
            )

    async def _save(
        self,
        *,
        trade_id: str,
        label: Label,
        labeler_id: str,
        quality_grade: str | None,
        user_comment: str | None,
        undoable: bool,
    ) -> LabelRecord:
        item = await self.storage.get_item(trade_id)
        if item is None:
            raise NotFoundError(f"unknown trade {trade_id!r}")
        screenshot = item.original_path or item.annotated_path
        record = LabelRecord(
            trade_id=trade_id,
            label=label,
            labeler_id=labeler_id,
            timestamp=datetime.now(UTC),
            quality_grade=quality_grade or None,
            user_comment=user_comment or None,
            llm_agreed=llm_agreed(label, item.suggestion_label),
            screenshot=screenshot,
            chroma_vector_id=image_vector_id(item.original_path) if item.original_path else None,
        )
        previous = await self.storage.current_label(trade_id)
        try:
            await asyncio.to_thread(write_label_file, self.labels_dir, record)
        except OSError as exc:
            LABEL_WRITE_FAILURES.inc()
            logger.error("label file not written: %s", exc, extra={"trade_id": trade_id})
            raise LabelWriteError(
                f"could not write the label file for {trade_id}: {exc.strerror or exc}"
            ) from exc
        event = _event_from(record)
        try:
            outbox_id = await self.storage.save_label(record, event=event, undoable=undoable)
        except BaseException:
            # The row did not change: put the file back the way it was, then fail.
            await asyncio.to_thread(self._restore_file, trade_id, previous)
            raise
        LABELS_TOTAL.labels(label).inc()
        try:
            await self.publish(event)
        except Exception as exc:  # NATS down or slow: the outbox relay sends it later
            logger.warning("label.saved kept in outbox: %s", exc, extra={"trade_id": trade_id})
            await self.storage.outbox_failed(outbox_id, f"{type(exc).__name__}: {exc}")
        else:
            await self.storage.outbox_done(outbox_id)
        return record

    def _restore_file(self, trade_id: str, previous: LabelRecord | None) -> None:
        try:
            if previous is None:
                label_path(self.labels_dir, trade_id).unlink(missing_ok=True)
            else:
                write_label_file(self.labels_dir, previous)
        except OSError:
            logger.exception("could not restore the label file", extra={"trade_id": trade_id})

    async def undo(self, *, labeler_id: str) -> Undone:
        """Undo the labeler's latest label: restore the trade's previous label.

        A trade that had a label before gets it back (a new ``label.saved`` with the
        previous label, grade and comment, by this labeler, now). A trade that was
        unlabeled cannot be "unsaved" downstream, so it goes to ``review`` (a
        ``label.saved`` with ``label=review`` and ``user_comment`` = UNDO_COMMENT).
        """
        entry = await self.storage.last_undoable(labeler_id)
        if entry is None:
            raise NotFoundError("nothing to undo")
        current = await self.storage.current_label(entry.trade_id)
        if current is None or current.timestamp != entry.occurred_at:
            await self.storage.mark_undone(entry.id)
            raise AlreadyExistsError(
                f"trade {entry.trade_id} was labeled again since; nothing undone"
            )
        previous = entry.previous
        label: Label = "review" if previous is None else previous.label
        grade = None if previous is None else previous.quality_grade
        comment = UNDO_COMMENT if previous is None else previous.user_comment
        saved = await self.save(
            trade_id=entry.trade_id,
            label=label,
            labeler_id=labeler_id,
            quality_grade=grade,
            user_comment=comment,
            undoable=False,
        )
        await self.storage.mark_undone(entry.id)
        return Undone(entry.trade_id, saved)

    async def refresh_metrics(self) -> QueueCounts:
        """Queue and agreement gauges from the table (cheap: one aggregate query)."""
        counts = await self.storage.counts()
        per_status = {
            "unlabeled": counts.unlabeled,
            "labeled": counts.labeled,
            "review": counts.review,
        }
        for status in STATUSES:
            QUEUE_ITEMS.labels(status).set(per_status[status])
        rate = agreement_rate(
            [True] * counts.agreed + [False] * (counts.with_suggestion - counts.agreed)
        )
        AGREEMENT_RATIO.set(rate if rate is not None else 0.0)
        return counts
