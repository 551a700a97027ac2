"""Grid pages: keyset cursors over the grid's order (trade time, nulls last; trade id).

A cursor names the last (or first) trade shown, not an offset, so labeling the trades of
one page out of a filter (e.g. "unlabeled") does not make the next page skip any.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

__all__ = ["PageCursor", "decode_cursor", "encode_cursor"]


@dataclass(frozen=True, slots=True)
class PageCursor:
    """A position in the grid's order."""

    trade_time: datetime | None
    trade_id: str


def encode_cursor(cursor: PageCursor) -> str:
    """An opaque URL-safe token."""
    when = cursor.trade_time.isoformat() if cursor.trade_time is not None else None
    raw = json.dumps([when, cursor.trade_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> PageCursor:
    """The cursor of a token; :class:`ValueError` when it is not one of ours."""
    if len(token) > 1000:
        raise ValueError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        when, trade_id = json.loads(raw)
        trade_time = datetime.fromisoformat(when) if when is not None else None
    except (binascii.Error, UnicodeDecodeError, TypeError, ValueError) as exc:
        raise ValueError("not a page cursor") from exc
    if not isinstance(trade_id, str) or (trade_time is not None and trade_time.tzinfo is None):
        raise ValueError("not a page cursor")
    return PageCursor(trade_time, trade_id)
