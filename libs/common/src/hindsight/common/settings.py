"""Settings shared by every service, read from the ``HINDSIGHT_*`` environment.

Each service subclasses :class:`BaseServiceSettings` with its own ``env_prefix``
(``HINDSIGHT_SCORER_`` ...). The shared variables keep their global names through
explicit aliases, so ``HINDSIGHT_NATS_URL`` is read whatever the service prefix is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["BaseServiceSettings", "parse_path_list"]


def _env(name: str) -> AliasChoices:
    # Both the env name and the python name, so tests can pass keyword arguments.
    return AliasChoices(name, name.removeprefix("HINDSIGHT_").lower())


def parse_path_list(value: object) -> list[Path]:
    """Split a colon-separated list of paths (like ``PATH``); empty parts are ignored."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Path(part) for part in value.split(":") if part.strip()]
    if isinstance(value, list | tuple):
        return [Path(str(part)) for part in value]
    raise ValueError("expected a colon-separated string of paths")


class BaseServiceSettings(BaseSettings):
    """What every service reads; see docs/design.md, section Configuration."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    nats_url: str | None = Field(
        default=None,
        validation_alias=_env("HINDSIGHT_NATS_URL"),
        description="NATS server URL(s), comma-separated. Unset: the dev stack starts its own.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=_env("HINDSIGHT_DATABASE_URL"),
        description="PostgreSQL DSN. Unset: the dev stack starts its own.",
    )
    artifact_root: Path = Field(
        default=Path(".hindsight/artifacts"),
        validation_alias=_env("HINDSIGHT_ARTIFACT_ROOT"),
        description="Directory of model artifacts: models/{model_name}/{version}/.",
    )
    image_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("HINDSIGHT_IMAGE_ROOTS"),
        description="Colon-separated directories that PNG paths in events must resolve inside.",
    )
    data_dir: Path = Field(
        default=Path(".hindsight"),
        validation_alias=_env("HINDSIGHT_DATA_DIR"),
        description="Local state of the dev stack (NATS, PostgreSQL, Chroma, logs).",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        validation_alias=_env("HINDSIGHT_ADMIN_TOKEN"),
        description="Bearer token for write APIs (registry, trainer). Unset: writes refused.",
    )
    log_level: str = Field(
        default="INFO",
        validation_alias=_env("HINDSIGHT_LOG_LEVEL"),
        description="Root log level (DEBUG, INFO, WARNING, ERROR).",
    )
    stream_max_age_s: float = Field(
        default=30 * 24 * 3600.0,
        gt=0,
        validation_alias=_env("HINDSIGHT_STREAM_MAX_AGE_S"),
        description="Max age of messages in the HINDSIGHT stream, in seconds.",
    )
    stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        validation_alias=_env("HINDSIGHT_STREAM_REPLICAS"),
        description="JetStream replicas: 1 in dev, 3 in production.",
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        validation_alias=_env("HINDSIGHT_MAX_DELIVERIES"),
        description="Deliveries of a failing message before it goes to dlq.<subject>.",
    )

    @field_validator("image_roots", mode="before")
    @classmethod
    def _split_image_roots(cls, value: object) -> list[Path]:
        return parse_path_list(value)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("nats_url")
    @classmethod
    def _nats_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for url in value.split(","):
            if not url.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
                raise ValueError(f"not a NATS URL: {url.strip()!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _pg_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @property
    def nats_servers(self) -> list[str]:
        """The NATS URLs as a list; empty when unset."""
        return [url.strip() for url in (self.nats_url or "").split(",") if url.strip()]

    def database_dsn(self) -> str | None:
        """The DSN in clear, for the connection pool only (never log it)."""
        return self.database_url.get_secret_value() if self.database_url else None
