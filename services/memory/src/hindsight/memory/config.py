"""Memory settings: ``HINDSIGHT_MEMORY_*`` plus the shared ``HINDSIGHT_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from hindsight.common.ports import PORTS
from hindsight.common.settings import BaseServiceSettings

__all__ = ["MemorySettings"]


class MemorySettings(BaseServiceSettings):
    """What the memory service reads from the environment (README: Settings)."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_MEMORY_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=PORTS["memory"].http, ge=0, le=65535)
    chroma_path: Path | None = Field(
        default=None, description="Embedded Chroma directory; default HINDSIGHT_DATA_DIR/chroma."
    )
    chroma_url: str | None = Field(
        default=None, description="Chroma server URL (http://host:port); set → HttpClient."
    )
    embed_timeout_s: float = Field(default=10.0, gt=0, description="embed.query timeout.")
    consumer_batch_size: int = Field(
        default=256,
        ge=1,
        le=1024,
        description="embedding.created messages fetched and written at once (one Chroma "
        "upsert per collection, one link-table upsert); Chroma indexes larger batches faster.",
    )
    keyword_candidates: int = Field(
        default=200, ge=1, le=5000, description="Full-text hits considered by a hybrid search."
    )
    search_overfetch: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Filtered search: ask for k x this many unfiltered neighbours and filter "
        "them here; 0 always uses Chroma's filtered query.",
    )
    search_overfetch_max: int = Field(
        default=1000, ge=1, le=20000, description="Cap on the over-fetched neighbours."
    )
    chunk_chars: int = Field(default=800, ge=100, le=20000)
    chunk_overlap: int = Field(default=120, ge=0, le=5000)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    retention_days: float = Field(default=0.0, ge=0, description="0 keeps records forever.")
    retention_mode: Literal["archive", "delete"] = "archive"
    retention_interval_s: float = Field(default=3600.0, gt=0)

    @field_validator("chroma_url")
    @classmethod
    def _chroma_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def resolved_chroma_path(self) -> Path:
        """Where the embedded Chroma keeps its files."""
        return self.chroma_path if self.chroma_path is not None else self.data_dir / "chroma"
