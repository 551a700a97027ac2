"""HTTP: /healthz /readyz /metrics, plus GET /v1/info (the models being served)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from hindsight.common.http import Readiness, create_http_app
from hindsight.embedder.config import EmbedderSettings
from hindsight.embedder.pipeline import EmbeddingPipeline

__all__ = ["create_app"]


def create_app(
    settings: EmbedderSettings, pipeline: EmbeddingPipeline, readiness: Readiness
) -> FastAPI:
    """The embedder's FastAPI app."""
    app = create_http_app(service="embedder", readiness=readiness)

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        models = pipeline.models
        return {
            "clip_model": models.clip.name if models else None,
            "clip_dim": models.clip.dim if models else None,
            "random_weights": models.clip.random_weights if models else None,
            "text_model": models.text.name if models else None,
            "text_dim": models.text.dim if models else None,
            "batch_size": settings.batch_size,
            "batch_timeout_ms": settings.batch_timeout_ms,
        }

    return app
