"""Deterministic vector ids, so every service names the same memory record the same way.

The embedder derives a record's ``vector_id`` from the event's idempotency key, so a
redelivered or republished event upserts the same Chroma record instead of adding one;
the labeling service derives the same id from a ``png.created`` to fill
``chroma_vector_id`` in ``label.saved``.
"""

from __future__ import annotations

import hashlib

__all__ = ["doc_vector_id", "image_vector_id"]


def _digest(kind: str, key: str) -> str:
    return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:32]


def image_vector_id(file_path: str) -> str:
    """The vector id of a ``png.created`` (its idempotency key is ``file_path``, as published)."""
    return "img-" + _digest("png", file_path)


def doc_vector_id(key: str, *, chunk: int = 0) -> str:
    """The vector id of a ``json.created`` (or an ingested document) chunk, from its key."""
    suffix = f"#{chunk}" if chunk else ""
    return "doc-" + _digest("json", key + suffix)
