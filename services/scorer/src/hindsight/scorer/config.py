"""Scorer settings: ``HINDSIGHT_SCORER_*`` plus the shared ``HINDSIGHT_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from hindsight.common.family import DEFAULT_FAMILY
from hindsight.common.ports import GRPC_PORTS, PORTS, local_url
from hindsight.common.settings import BaseServiceSettings
from hindsight.common.tls import check_server_tls_settings, empty_is_unset

__all__ = ["ScorerSettings"]

_PREFIX = "HINDSIGHT_SCORER_"


class ScorerSettings(BaseServiceSettings):
    """Everything the scorer reads from the environment."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore", populate_by_name=True)

    grpc_host: str = Field(default="127.0.0.1", description="gRPC bind address.")
    grpc_port: int = Field(
        default=GRPC_PORTS["scorer"], ge=0, le=65535, description="gRPC Scoring port."
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain): the gRPC port speaks TLS only."
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key for gRPC TLS.")
    tls_client_ca_file: Path | None = Field(
        default=None, description="PEM CA: callers must show a client certificate it signed."
    )
    http_host: str = Field(default="127.0.0.1", description="HTTP bind address.")
    http_port: int = Field(
        default=PORTS["scorer"].http, ge=0, le=65535, description="HTTP port (ops + models)."
    )
    default_model: str = Field(
        default="trade_success", min_length=1, description="Model used when a call names none."
    )
    default_family: str = Field(
        default=DEFAULT_FAMILY,
        min_length=1,
        description="Model family used when a Predict call names none.",
    )
    registry_url: str = Field(
        default=local_url("registry"),
        description="Registry base URL, asked for /v1/deployments when NATS is down at start.",
    )
    registry_timeout_s: float = Field(default=2.0, gt=0, description="Registry call timeout.")
    nats_grace_s: float = Field(
        default=2.0,
        ge=0,
        description="How long start-up waits for NATS before using the registry / cache.",
    )
    warmup_runs: int = Field(default=3, ge=1, description="Inference runs before a swap.")
    log_queue_size: int = Field(
        default=10_000, ge=1, description="Predictions waiting to be logged; oldest dropped."
    )
    log_max_in_flight: int = Field(
        default=32,
        ge=1,
        validation_alias=AliasChoices(
            "HINDSIGHT_SCORER_LOG_MAX_IN_FLIGHT",
            "HINDSIGHT_SCORER_LOG_BATCH_SIZE",  # its old name, still read
            "log_max_in_flight",
        ),
        description="prediction.logged publishes awaiting their ack at once.",
    )
    log_linger_ms: float = Field(
        default=50.0,
        ge=0,
        le=1000,
        description=(
            "prediction.logged waits this long after an answer so the answers of the window "
            "are published together (fewer loop wake-ups per answer); 0 publishes at once."
        ),
    )
    drift_enabled: bool = Field(
        default=True, description="Online feature drift (PSI) against the card's reference."
    )
    drift_window: int = Field(
        default=2000, ge=1, description="Scored rows per model version in the drift window."
    )
    drift_min_rows: int = Field(
        default=500, ge=1, description="Rows in the window before PSI is reported."
    )
    drift_psi_threshold: float = Field(
        default=0.2, gt=0, description="PSI above which a feature counts as drifted."
    )
    drift_flush_s: float = Field(
        default=1.0, gt=0, description="How often scored rows are binned into the window."
    )
    drift_export_s: float = Field(
        default=5.0, gt=0, description="How often the drift gauges are refreshed."
    )

    @field_validator("tls_cert_file", "tls_key_file", "tls_client_ca_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return empty_is_unset(value)

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        check_server_tls_settings(
            f"{_PREFIX}TLS_",
            cert_file=self.tls_cert_file,
            key_file=self.tls_key_file,
            client_ca_file=self.tls_client_ca_file,
        )
        return self

    @property
    def cache_path(self) -> Path:
        """The served deployments' file: ``$HINDSIGHT_DATA_DIR/scorer/deployments.json``."""
        return self.data_dir / "scorer" / "deployments.json"
