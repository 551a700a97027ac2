"""The ``embed.query`` client: NATS request-reply to the embedder (contract: common brief)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from faststream.nats import NatsBroker
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.events import EMBED_QUERY

__all__ = ["EMBED_QUERY_SUBJECT", "NatsQueryEmbedder", "QueryEmbedder", "QueryVector"]

EMBED_QUERY_SUBJECT = EMBED_QUERY

Tower = Literal["clip", "text"]


@dataclass(frozen=True, slots=True)
class QueryVector:
    """A query embedding and the model that made it."""

    embedding: list[float]
    model: str


class QueryEmbedder(Protocol):
    """Turns a text or an image path into a query vector."""

    async def embed(
        self, *, tower: Tower, text: str | None = None, image_path: str | None = None
    ) -> QueryVector: ...


def parse_reply(data: bytes, *, field: str) -> QueryVector:
    """The embedder's reply → a vector, or the error it names (bad input / unavailable)."""
    try:
        body: Any = json.loads(data)
    except ValueError as exc:
        raise UnavailableError(f"embedder sent an unreadable reply: {exc}") from exc
    if not isinstance(body, dict):
        raise UnavailableError("embedder sent a reply that is not an object")
    error = body.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise InvalidInputError(f"embedder: {message}", field=field)
    embedding, model = body.get("embedding"), body.get("model")
    if (
        not isinstance(embedding, list)
        or not embedding
        or not all(isinstance(x, int | float) and math.isfinite(x) for x in embedding)
        or not isinstance(model, str)
        or not model
    ):
        raise UnavailableError("embedder reply lacks a finite embedding or a model name")
    return QueryVector([float(x) for x in embedding], model)


class NatsQueryEmbedder:
    """Asks the embedder over the broker's NATS connection (10 s by default)."""

    def __init__(self, broker: NatsBroker, *, timeout: float) -> None:
        self.broker = broker
        self.timeout = timeout

    async def embed(
        self, *, tower: Tower, text: str | None = None, image_path: str | None = None
    ) -> QueryVector:
        request: dict[str, str] = {"tower": tower}
        if text is not None:
            request["text"] = text
        if image_path is not None:
            request["image_path"] = image_path
        field = "text" if text is not None else "image_path"
        try:
            msg = await self.broker.connection.request(
                EMBED_QUERY_SUBJECT, json.dumps(request).encode(), timeout=self.timeout
            )
        except NoRespondersError as exc:
            raise UnavailableError(
                "the embedder is not running (no responder on embed.query): text and image "
                "searches need it; vector and vector_id searches still work"
            ) from exc
        except (NatsTimeoutError, TimeoutError) as exc:
            raise UnavailableError(
                f"the embedder did not answer embed.query within {self.timeout:g}s"
            ) from exc
        except ConnectionClosedError as exc:
            raise UnavailableError("NATS connection closed") from exc
        return parse_reply(msg.data, field=field)
