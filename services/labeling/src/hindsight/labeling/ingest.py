"""Builds the queue from ``png.created`` and ``json.created`` (idempotent upserts)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import JsonCreated, PngCreated
from hindsight.labeling.domain.labels import LABELS
from hindsight.labeling.domain.pngcheck import PngLimits
from hindsight.labeling.images import check_png_file
from hindsight.labeling.labelfiles import valid_trade_id
from hindsight.labeling.storage import Storage

__all__ = ["QueueBuilder"]

logger = logging.getLogger(__name__)


def _check_trade_id(trade_id: str) -> None:
    # A trade that could never get its label file is bad input, not a queue item.
    if not valid_trade_id(trade_id):
        raise InvalidInputError(
            "not a usable trade id (1-200 of A-Z a-z 0-9 . _ : @ -, no '..')", field="trade_id"
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class QueueBuilder:
    """Event handlers that fill the ``items`` table."""

    def __init__(
        self, storage: Storage, image_roots: Sequence[Path], *, png_limits: PngLimits
    ) -> None:
        self.storage = storage
        self.image_roots = list(image_roots)
        self.png_limits = png_limits

    async def on_png(self, event: PngCreated) -> None:
        """Attach a chart to its trade; charts of no trade are not labeled (ignored)."""
        if event.trade_id is None:
            return
        _check_trade_id(event.trade_id)
        # Not a PNG within the limits, or outside the roots: bad input (→ DLQ) now; the
        # file is checked again each time it is served.
        await asyncio.to_thread(
            check_png_file, event.file_path, self.image_roots, self.png_limits, field="file_path"
        )
        await self.storage.upsert_png(
            trade_id=event.trade_id,
            image_type=event.image_type or "original",
            file_path=event.file_path,
            run_id=event.run_id,
            symbol=event.symbol,
            timeframe=event.timeframe,
            setup_id=event.setup_id,
            occurred_at=event.occurred_at,
        )

    async def on_json(self, event: JsonCreated) -> None:
        """trade_meta and llm_suggestion documents; other document types are not ours."""
        if event.doc_type not in ("trade_meta", "llm_suggestion"):
            return
        payload = event.payload
        trade_id = event.trade_id or payload.get("trade_id")
        if not isinstance(trade_id, str) or not trade_id:
            raise InvalidInputError(f"{event.doc_type} without a trade_id", field="trade_id")
        _check_trade_id(trade_id)
        if event.doc_type == "trade_meta":
            state = "closed" if payload.get("closed_at") or payload.get("result") else "open"
            if event.doc_id and event.doc_id.endswith(":closed"):
                state = "closed"
            await self.storage.upsert_trade_meta(
                trade_id=trade_id,
                payload=payload,
                state=state,
                run_id=event.run_id,
                trade_time=_parse_time(payload.get("opened_at")),
            )
            return
        label = payload.get("label")
        await self.storage.upsert_suggestion(
            trade_id=trade_id,
            payload=payload,
            label=label if label in LABELS else None,
            run_id=event.run_id,
        )
