"""Deterministic vector ids, so every service names the same memory record the same way.

The embedder derives a record's ``vector_id`` from the event's idempotency key, so a
redelivered or republished event upserts the same Chroma record instead of adding one;
the labeling service derives the same id from a ``png.created`` to fill
``chroma_vector_id`` in ``label.saved``.

:func:`record_time` is a record's event time, the one ``as_of`` searches compare.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from hindsight.common.events import JsonCreated, PngCreated
from hindsight.common.paths import canonical_path

__all__ = ["doc_vector_id", "image_vector_id", "record_time"]


def _digest(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:32]


def image_vector_id(file_path: str) -> str:
    """The vector id of a ``png.created``: from its ``file_path`` in canonical form, so two
    spellings of one path (``/a/./b.png``, ``/a/b.png``) name one record. A relative path
    (refused by the event contract; kept here for ids of old records) is hashed as given."""
    try:
        key = canonical_path(file_path)
    except ValueError:
        key = file_path
    return "img-" + _digest("png", key)


def doc_vector_id(key: str, *, chunk: int = 0) -> str:
    """The vector id of a ``json.created`` (or an ingested document) chunk, from its key."""
    suffix = f"#{chunk}" if chunk else ""
    return "doc-" + _digest("json", key + suffix)


def record_time(event: PngCreated | JsonCreated) -> datetime:
    """The event time of the record an event makes: the trade / bar / document time
    ``ts`` when given, else ``occurred_at`` (when the file was written)."""
    return event.ts if event.ts is not None else event.occurred_at
