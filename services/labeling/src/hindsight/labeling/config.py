"""Labeling settings: ``HINDSIGHT_LABELING_*`` plus the shared ``HINDSIGHT_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from hindsight.common.ports import PORTS, local_url
from hindsight.common.settings import BaseServiceSettings
from hindsight.labeling.domain.keymap import parse_keymap
from hindsight.labeling.domain.pngcheck import PngLimits

__all__ = ["LabelingSettings"]


class LabelingSettings(BaseServiceSettings):
    """What the labeling service reads from the environment (README: Settings)."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_LABELING_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=PORTS["labeling"].http, ge=0, le=65535)
    labels_dir: Path | None = Field(
        default=None, description="Where labels/{trade_id}_label.json go; default data_dir/labels."
    )
    memory_url: str = Field(
        default=local_url("memory"), description="Memory HTTP API, for 'similar to this'."
    )
    memory_health_ttl_s: float = Field(default=5.0, ge=0)
    keymap: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=lambda: parse_keymap(None),
        description='JSON object action -> key(s), e.g. {"approve": ["y", "a"]}.',
    )
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0)
    secure_cookie: bool = Field(
        default=False, description="Set the Secure flag on the session cookie (behind HTTPS)."
    )
    outbox_retry_s: float = Field(default=2.0, gt=0)
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Failed sign-ins per account within the window before a lockout.",
    )
    login_address_max_failures: int = Field(
        default=20,
        ge=1,
        description="Failed sign-ins per client address (IPv6: per /64) before a lockout.",
    )
    login_window_s: float = Field(default=300.0, gt=0, description="Sliding window of failures.")
    login_lockout_s: float = Field(default=900.0, gt=0, description="How long a lockout lasts.")
    login_throttle_max_keys: int = Field(
        default=10_000, ge=1, description="Accounts and addresses remembered each (memory bound)."
    )

    image_max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="Largest chart file accepted and served."
    )
    image_max_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="Largest chart (width x height from its IHDR) accepted and served.",
    )
    page_size: int = Field(default=100, ge=1, le=500, description="Trades per grid page.")

    @field_validator("keymap", mode="before")
    @classmethod
    def _parse_keymap(cls, value: object) -> dict[str, list[str]]:
        return parse_keymap(value)

    @field_validator("memory_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def png_limits(self) -> PngLimits:
        """The chart checks' limits."""
        return PngLimits(max_bytes=self.image_max_bytes, max_pixels=self.image_max_pixels)

    def resolved_labels_dir(self) -> Path:
        """The labels directory (``data_dir/labels`` unless set)."""
        return self.labels_dir if self.labels_dir is not None else self.data_dir / "labels"
