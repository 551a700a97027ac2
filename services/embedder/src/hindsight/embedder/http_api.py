"""HTTP: /healthz /readyz /metrics, plus GET /v1/info (the models being served)."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from hindsight.common.http import Readiness, create_http_app
from hindsight.embedder.config import EmbedderSettings
from hindsight.embedder.pipeline import EmbeddingPipeline

__all__ = ["EmbedderInfo", "create_app"]


class EmbedderInfo(BaseModel):
    """Body of ``GET /v1/info``: the models being served (null until they are loaded)."""

    model_config = ConfigDict(frozen=True)

    clip_model: str | None
    clip_dim: int | None
    random_weights: bool | None
    """Whether the CLIP weights are random (tests, demos)."""
    text_model: str | None
    text_dim: int | None
    batch_size: int
    batch_timeout_ms: float


def create_app(
    settings: EmbedderSettings, pipeline: EmbeddingPipeline, readiness: Readiness
) -> FastAPI:
    """The embedder's FastAPI app."""
    app = create_http_app(service="embedder", readiness=readiness)

    @app.get("/v1/info", response_model=EmbedderInfo)
    async def info() -> EmbedderInfo:
        models = pipeline.models
        return EmbedderInfo(
            clip_model=models.clip.name if models else None,
            clip_dim=models.clip.dim if models else None,
            random_weights=models.clip.random_weights if models else None,
            text_model=models.text.name if models else None,
            text_dim=models.text.dim if models else None,
            batch_size=settings.batch_size,
            batch_timeout_ms=settings.batch_timeout_ms,
        )

    return app
