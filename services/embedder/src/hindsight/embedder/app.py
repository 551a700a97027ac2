"""The composition root: builds the embedder's parts from settings and wires them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from faststream.nats import NatsBroker

from hindsight.common.broker import create_broker
from hindsight.common.errors import UnavailableError
from hindsight.common.http import HttpServer, Readiness
from hindsight.common.logs import configure_logging
from hindsight.common.runtime import BrokerPart, Part, PartGroup, nats_ready, serve
from hindsight.embedder.config import EmbedderSettings
from hindsight.embedder.http_api import create_app
from hindsight.embedder.messaging import make_publisher, register_consumers
from hindsight.embedder.models import Models, load_clip, load_text_model, resolve_device
from hindsight.embedder.pipeline import EmbeddingPipeline

__all__ = ["Embedder", "build_settings", "load_models", "main"]

SERVICE = "embedder"
logger = logging.getLogger(__name__)


def build_settings(**overrides: Any) -> EmbedderSettings:
    """Settings from the environment, keyword overrides first (tests)."""
    return EmbedderSettings(**overrides)


def load_models(settings: EmbedderSettings) -> Models:
    """Load CLIP and MiniLM as configured (blocking; seconds)."""
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = resolve_device(settings.device)
    clip = load_clip(
        arch=settings.clip_arch,
        pretrained=settings.clip_pretrained,
        weights_file=settings.clip_weights_file,
        allow_random_weights=settings.allow_random_weights,
        device=device,
    )
    return Models(clip=clip, text=load_text_model(device=device))


class _ModelsPart:
    """Loads the models (unless given) off the event loop, then starts the batchers."""

    def __init__(
        self, settings: EmbedderSettings, pipeline: EmbeddingPipeline, models: Models | None
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.models = models

    async def start(self) -> None:
        if self.models is None:
            self.models = await asyncio.to_thread(load_models, self.settings)
        await self.pipeline.start(self.models)
        logger.info(
            "models ready",
            extra={"clip": self.models.clip.name, "text": self.models.text.name},
        )

    async def stop(self) -> None:
        await self.pipeline.stop()


class Embedder(PartGroup):
    """Every part of the embedder, in start order: HTTP (health while loading), models, NATS."""

    def __init__(self, settings: EmbedderSettings, *, models: Models | None = None) -> None:
        self.settings = settings
        self.broker: NatsBroker = create_broker(settings, client_name=SERVICE)
        self.pipeline = EmbeddingPipeline(settings, make_publisher(self.broker))
        register_consumers(self.broker, self.pipeline, settings)
        readiness = Readiness(SERVICE)
        readiness.register("models", self._models_ready)
        readiness.register("nats", nats_ready(self.broker))
        self.http_app: FastAPI = create_app(settings, self.pipeline, readiness)
        self.http = HttpServer(self.http_app, host=settings.http_host, port=settings.http_port)
        self.parts = [
            Part("http", self.http),
            Part("models", _ModelsPart(settings, self.pipeline, models)),
            Part("nats", BrokerPart(self.broker, settings)),
        ]

    async def _models_ready(self) -> None:
        if not self.pipeline.ready:
            raise UnavailableError("models loading")


def main() -> None:
    """Run the embedder until SIGINT/SIGTERM."""
    settings = build_settings()
    configure_logging(SERVICE, settings.log_level)
    embedder = Embedder(settings)
    asyncio.run(serve(SERVICE, embedder.parts))
