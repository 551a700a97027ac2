"""What the embedder does with an event or a query, transport aside.

Handlers decode (off the event loop), submit to a model's micro-batcher, await the
vector and publish ``embedding.created``. Bad input raises :class:`InvalidInputError`
naming the field (the broker dead-letters it); model errors propagate and are retried.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
from numpy.typing import NDArray

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import EmbeddingCreated, JsonCreated, PngCreated
from hindsight.common.paths import resolve_in_roots
from hindsight.embedder.config import EmbedderSettings
from hindsight.embedder.domain.batcher import MicroBatcher
from hindsight.embedder.domain.images import NotAPngError, decode_png, thumbnail_b64
from hindsight.embedder.domain.text import render_document
from hindsight.embedder.metrics import (
    BATCH_SIZE,
    EMBED_SECONDS,
    EMBEDDINGS,
    LAG_SECONDS,
    QUERIES,
)
from hindsight.embedder.models import Models
from hindsight.embedder.records import image_embedding, text_embedding

__all__ = [
    "EmbedQuery",
    "EmbeddingPipeline",
    "PreparedImage",
    "Publisher",
    "QueryAnswer",
    "QueryFailed",
    "QueryReply",
]

Publisher = Callable[[EmbeddingCreated], Awaitable[None]]
Vector = NDArray[np.float32]
Tower = Literal["clip", "text"]


@dataclass(frozen=True, slots=True)
class EmbedQuery:
    """A checked ``embed.query`` request: a text or an image path, and the tower asked."""

    tower: Tower
    text: str | None = None
    image_path: str | None = None


class QueryError(TypedDict):
    """Why a query was not answered; ``field`` names the request field at fault."""

    field: str | None
    message: str


class QueryAnswer(TypedDict):
    """The reply to an answered query (written with ``json.dumps``)."""

    embedding: list[float]
    model: str
    took_ms: float


class QueryFailed(TypedDict):
    """The reply to a query that was not answered."""

    error: QueryError


QueryReply = QueryAnswer | QueryFailed


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """A PNG decoded and preprocessed for the model, with its thumbnail."""

    model_input: Any
    thumbnail_b64: str


def _observer(modality: str) -> Callable[[int, float], None]:
    def observe(size: int, seconds: float) -> None:
        BATCH_SIZE.observe(size)
        EMBED_SECONDS.labels(modality).observe(seconds)

    return observe


class EmbeddingPipeline:
    """Image and text embedding with one micro-batcher per model tower."""

    def __init__(self, settings: EmbedderSettings, publish: Publisher) -> None:
        self.settings = settings
        self._publish = publish
        self.models: Models | None = None
        self._images: MicroBatcher[Any, Vector] | None = None
        self._clip_texts: MicroBatcher[str, Vector] | None = None
        self._texts: MicroBatcher[str, Vector] | None = None

    # --- life ------------------------------------------------------------------------

    async def start(self, models: Models) -> None:
        """Start the batchers over ``models``."""
        self.models = models
        size, wait = self.settings.batch_size, self.settings.batch_timeout_ms / 1000.0

        def rows(fn: Callable[[Any], Vector]) -> Callable[[Any], list[Vector]]:
            return lambda items: list(fn(items))

        self._images = MicroBatcher(
            rows(models.clip.encode_images),
            max_size=size,
            max_wait_s=wait,
            name="clip-image",
            observe=_observer("image"),
        )
        self._clip_texts = MicroBatcher(
            rows(models.clip.encode_texts),
            max_size=size,
            max_wait_s=wait,
            name="clip-text",
            observe=_observer("text"),
        )
        self._texts = MicroBatcher(
            rows(models.text.encode),
            max_size=size,
            max_wait_s=wait,
            name="minilm",
            observe=_observer("text"),
        )
        for batcher in (self._images, self._clip_texts, self._texts):
            await batcher.start()

    async def stop(self) -> None:
        """Stop the batchers; items still waiting fail (their messages are redelivered)."""
        for batcher in (self._images, self._clip_texts, self._texts):
            if batcher is not None:
                await batcher.stop()

    @property
    def ready(self) -> bool:
        return self.models is not None

    def _require(
        self,
    ) -> tuple[
        Models, MicroBatcher[Any, Vector], MicroBatcher[str, Vector], MicroBatcher[str, Vector]
    ]:
        if self.models is None or not (self._images and self._clip_texts and self._texts):
            raise RuntimeError("models are not loaded yet")
        return self.models, self._images, self._clip_texts, self._texts

    # --- images ----------------------------------------------------------------------

    def prepare_image(self, path: Path, *, field: str, shown: str) -> PreparedImage:
        """Read, verify and decode a PNG; preprocess it and make its thumbnail (blocking)."""
        models, *_ = self._require()
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise InvalidInputError(
                f"{shown!r} cannot be read: {exc.strerror}", field=field
            ) from exc
        try:
            image = decode_png(data)
        except NotAPngError as exc:
            raise InvalidInputError(f"{shown!r} is {exc}", field=field) from exc
        return PreparedImage(
            model_input=models.clip.preprocess(image),
            thumbnail_b64=thumbnail_b64(image, max_px=self.settings.thumbnail_px),
        )

    async def _image_vector(self, raw_path: str, *, field: str) -> tuple[Vector, PreparedImage]:
        _, images, _, _ = self._require()
        path = resolve_in_roots(raw_path, self.settings.image_roots, field=field)
        prepared = await asyncio.to_thread(self.prepare_image, path, field=field, shown=raw_path)
        return await images.submit(prepared.model_input), prepared

    async def on_png(self, event: PngCreated) -> None:
        """png.created → one image embedding."""
        models, *_ = self._require()
        vector, prepared = await self._image_vector(event.file_path, field="file_path")
        record = image_embedding(
            event,
            vector.tolist(),
            model=models.clip.name,
            random_weights=models.clip.random_weights,
            thumbnail_b64=prepared.thumbnail_b64,
        )
        await self._emit(record, occurred_at=event.occurred_at)

    # --- texts -----------------------------------------------------------------------

    async def on_json(self, event: JsonCreated) -> None:
        """json.created → its readable text → one text embedding."""
        models, _, _, texts = self._require()
        document = render_document(event.doc_type, event.payload, event.key_fields)
        vector = await texts.submit(document)
        record = text_embedding(event, vector.tolist(), model=models.text.name, document=document)
        await self._emit(record, occurred_at=event.occurred_at)

    async def _emit(self, record: EmbeddingCreated, *, occurred_at: datetime) -> None:
        await self._publish(record)
        EMBEDDINGS.labels(record.modality, record.collection).inc()
        lag = (datetime.now(UTC) - occurred_at).total_seconds()
        LAG_SECONDS.labels(record.modality).observe(max(0.0, lag))

    # --- embed.query -----------------------------------------------------------------

    async def query(self, body: bytes) -> QueryReply:
        """An ``embed.query`` request → ``{"embedding", "model"}`` or ``{"error": {...}}``."""
        tower = "unknown"
        started = time.perf_counter()
        try:
            request = _parse_query(body)
            tower = request.tower
            vector, model = await self._answer(request)
        except InvalidInputError as exc:
            QUERIES.labels(tower, "invalid").inc()
            return QueryFailed(error=QueryError(field=exc.field, message=exc.reason))
        except Exception as exc:
            QUERIES.labels(tower, "error").inc()
            return QueryFailed(error=QueryError(field=None, message=f"{type(exc).__name__}: {exc}"))
        QUERIES.labels(tower, "ok").inc()
        return QueryAnswer(
            embedding=vector.tolist(),
            model=model,
            took_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )

    async def _answer(self, request: EmbedQuery) -> tuple[Vector, str]:
        models, _, clip_texts, texts = self._require()
        if request.image_path is not None:
            vector, _ = await self._image_vector(request.image_path, field="image_path")
            return vector, models.clip.name
        assert request.text is not None
        if request.tower == "clip":
            return await clip_texts.submit(request.text), models.clip.name
        return await texts.submit(request.text), models.text.name


def _parse_query(body: bytes) -> EmbedQuery:
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"not JSON: {exc}", field="body") from exc
    if not isinstance(request, dict):
        raise InvalidInputError("expected a JSON object", field="body")
    has_text, has_image = "text" in request, "image_path" in request
    if has_text == has_image:
        raise InvalidInputError("give exactly one of text or image_path", field="text")
    key = "text" if has_text else "image_path"
    value = request[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError("must be a non-empty string", field=key)
    tower = request.get("tower", "clip")
    if tower not in ("clip", "text"):
        raise InvalidInputError("must be 'clip' or 'text'", field="tower")
    if has_image and tower != "clip":
        raise InvalidInputError("an image_path is embedded by the clip tower only", field="tower")
    if has_text:
        return EmbedQuery(tower=tower, text=value)
    return EmbedQuery(tower=tower, image_path=value)
