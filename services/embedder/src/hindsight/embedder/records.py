"""Events in → ``embedding.created`` out: vector ids, collections and vector metadata
exactly as the embedder → memory contract says (ids from :mod:`hindsight.common.record_ids`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hindsight.common.events import EmbeddingCreated, JsonCreated, PngCreated, format_utc
from hindsight.common.record_ids import doc_vector_id, image_vector_id, record_time

__all__ = ["SOURCE", "collection_for", "image_embedding", "text_embedding"]

SOURCE = "embedder"
_COLLECTIONS = {"theory": "theory_docs", "prompt": "prompts_history"}

MetadataValue = str | int | float | bool | None
"""A value of a vector's metadata (Chroma stores scalars only)."""


def collection_for(doc_type: str) -> str:
    """theory → ``theory_docs``, prompt → ``prompts_history``, anything else → ``trade_cases``."""
    return _COLLECTIONS.get(doc_type, "trade_cases")


def _known(**values: str | None) -> dict[str, MetadataValue]:
    return {key: value for key, value in values.items() if value is not None}


def _payload_str(payload: Mapping[str, object], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) and value else None


def image_embedding(
    event: PngCreated,
    embedding: Sequence[float],
    *,
    model: str,
    random_weights: bool,
    thumbnail_b64: str,
) -> EmbeddingCreated:
    """The record of one chart PNG (collection ``trade_cases``, modality ``image``)."""
    vector_id = image_vector_id(event.file_path)
    metadata: dict[str, MetadataValue] = {
        "id": vector_id,
        "file_path": event.file_path,
        "run_id": event.run_id,
        "trade_id": event.trade_id,
        "setup_id": event.setup_id,
        "rule_version": event.rule_version,
        "timestamp": format_utc(record_time(event)),
        "type": "image",
        "source": event.source,
        **_known(
            image_type=event.image_type,
            symbol=event.symbol,
            timeframe=event.timeframe,
            author=event.author,
        ),
        "embedding_model": model,
        "random_weights": random_weights,
    }
    return EmbeddingCreated.create(
        source=SOURCE,
        vector_id=vector_id,
        collection="trade_cases",
        modality="image",
        model=model,
        embedding=[float(x) for x in embedding],
        metadata=metadata,
        thumbnail_b64=thumbnail_b64,
    )


def text_embedding(
    event: JsonCreated, embedding: Sequence[float], *, model: str, document: str
) -> EmbeddingCreated:
    """The record of one JSON document (collection by ``doc_type``, modality ``text``)."""
    vector_id = doc_vector_id(event.idempotency_key())
    payload = event.payload
    metadata: dict[str, MetadataValue] = {
        "id": vector_id,
        "file_path": event.file_path or "",
        "run_id": event.run_id,
        "trade_id": event.trade_id or _payload_str(payload, "trade_id"),
        "setup_id": event.setup_id,
        "rule_version": event.rule_version,
        "timestamp": format_utc(record_time(event)),
        "type": "text",
        "source": event.source,
        "doc_type": event.doc_type,
        **_known(
            doc_id=event.doc_id,
            symbol=_payload_str(payload, "symbol"),
            timeframe=_payload_str(payload, "timeframe"),
        ),
        "embedding_model": model,
        "random_weights": False,
    }
    return EmbeddingCreated.create(
        source=SOURCE,
        vector_id=vector_id,
        collection=collection_for(event.doc_type),
        modality="text",
        model=model,
        embedding=[float(x) for x in embedding],
        metadata=metadata,
        document=document,
    )
