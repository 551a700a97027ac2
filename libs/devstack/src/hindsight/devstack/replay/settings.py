"""``ReplaySettings``: the shared ``HINDSIGHT_*`` variables plus ``HINDSIGHT_REPLAY_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from hindsight.common.settings import BaseServiceSettings
from hindsight.ops.services import SERVICE_PORTS

from .data import DATA_SETS
from .plan import default_run_id

__all__ = ["ReplaySettings", "build_settings"]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class ReplaySettings(BaseServiceSettings):
    """How the replay feeder runs; every field also reads ``HINDSIGHT_REPLAY_<FIELD>``."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_REPLAY_", extra="ignore", populate_by_name=True
    )

    data: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["eurusd"],
        validation_alias=_env("HINDSIGHT_REPLAY_DATA", "data"),
        description="Data sets, comma-separated: eurusd, goog, synthetic.",
    )
    bars_per_second: float = Field(
        default=20.0,
        gt=0,
        validation_alias=_env("HINDSIGHT_REPLAY_BARS_PER_SECOND", "bars_per_second"),
    )
    fast: bool = Field(
        default=False,
        validation_alias=_env("HINDSIGHT_REPLAY_FAST", "fast"),
        description="As fast as possible (bounded in-flight publishes) instead of paced.",
    )
    limit_signals: int | None = Field(
        default=None, ge=1, validation_alias=_env("HINDSIGHT_REPLAY_LIMIT_SIGNALS", "limit_signals")
    )
    run_id: str | None = Field(
        default=None,
        validation_alias=_env("HINDSIGHT_REPLAY_RUN_ID", "run_id"),
        description="Default: derived from the data sets and the rules version.",
    )
    seed: int = Field(default=7, validation_alias=_env("HINDSIGHT_REPLAY_SEED", "seed"))
    gateway: str | None = Field(
        default=None,
        validation_alias=_env("HINDSIGHT_REPLAY_GATEWAY", "gateway"),
        description="host:port of the gateway's gRPC; default 127.0.0.1:<gateway grpc port>.",
    )
    gateway_grpc_port: int = Field(
        default=SERVICE_PORTS["gateway"]["grpc"],
        ge=1,
        le=65535,
        validation_alias=_env("HINDSIGHT_GATEWAY_GRPC_PORT", "gateway_grpc_port"),
    )
    score: bool = Field(
        default=True,
        validation_alias=_env("HINDSIGHT_REPLAY_SCORE", "score"),
        description="Call the gateway's Score for every signal.",
    )
    score_timeout_s: float = Field(
        default=0.2,
        gt=0,
        validation_alias=_env("HINDSIGHT_REPLAY_SCORE_TIMEOUT_S", "score_timeout_s"),
    )
    max_in_flight: int = Field(
        default=256, ge=1, validation_alias=_env("HINDSIGHT_REPLAY_MAX_IN_FLIGHT", "max_in_flight")
    )
    image_dir: Path | None = Field(
        default=None,
        validation_alias=_env("HINDSIGHT_REPLAY_IMAGE_DIR", "image_dir"),
        description="Where charts go; default HINDSIGHT_DATA_DIR/images/replay.",
    )
    status_interval_s: float = Field(
        default=5.0,
        gt=0,
        validation_alias=_env("HINDSIGHT_REPLAY_STATUS_INTERVAL_S", "status_interval_s"),
    )

    @field_validator("data", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", ",").split(",") if part]
        return value

    @field_validator("data")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        names = [v.lower() for v in value]
        unknown = [v for v in names if v not in DATA_SETS]
        if unknown or not names:
            raise ValueError(f"data sets must be among {', '.join(DATA_SETS)}, got {value!r}")
        return list(dict.fromkeys(names))

    @property
    def effective_run_id(self) -> str:
        return self.run_id or default_run_id(self.data, seed=self.seed)

    @property
    def gateway_target(self) -> str:
        return self.gateway or f"127.0.0.1:{self.gateway_grpc_port}"

    @property
    def effective_image_dir(self) -> Path:
        return (self.image_dir or self.data_dir / "images" / "replay").absolute()


def build_settings(**overrides: object) -> ReplaySettings:
    """Settings from the environment, with ``overrides`` (python field names) on top."""
    return ReplaySettings(**overrides)  # type: ignore[arg-type]
