"""Embedder settings: ``HINDSIGHT_EMBEDDER_*`` plus the shared ``HINDSIGHT_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from hindsight.common.events import EMBED_QUERY
from hindsight.common.ports import PORTS
from hindsight.common.settings import BaseServiceSettings

__all__ = ["EmbedderSettings"]


class EmbedderSettings(BaseServiceSettings):
    """What the embedder reads from the environment (README: Settings)."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_EMBEDDER_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=PORTS["embedder"].http, ge=0, le=65535)
    # CLIP (images, and text -> image queries)
    clip_arch: str = Field(default="ViT-B-32", description="open_clip architecture name.")
    clip_pretrained: str | None = Field(
        default=None, description="open_clip pretrained tag; used only if loadable offline."
    )
    clip_weights_file: Path | None = Field(
        default=None, description="Local open_clip checkpoint (.pt / .bin / .safetensors)."
    )
    allow_random_weights: bool = Field(
        default=False,
        description="Start with random CLIP weights when no weights are given (tests, demos).",
    )
    # Micro-batching
    batch_size: int = Field(default=32, ge=1, le=1024, description="Flush at N items.")
    batch_timeout_ms: float = Field(
        default=50.0, ge=0, le=600_000, description="Flush T ms after the first item."
    )
    # Output
    thumbnail_px: int = Field(default=128, ge=16, le=1024, description="Thumbnail max side.")
    # Compute
    device: Literal["auto", "cpu", "cuda"] = "auto"
    torch_threads: int = Field(default=0, ge=0, description="0 = torch's default.")
    text_model: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"
    # Consumers
    durable_prefix: str = Field(default="embedder", min_length=1)
    ack_wait_s: float = Field(
        default=15.0,
        ge=1,
        le=600,
        description="JetStream ack wait of the consumers. Messages waiting for a batch are "
        "kept with in-progress heartbeats, so this bounds how long a crashed embedder's "
        "messages wait before redelivery, not how long a batch may take.",
    )
    query_subject: str = EMBED_QUERY

    @field_validator("clip_pretrained")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("clip_weights_file", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if value == "" else value
