"""Gateway settings: ``HINDSIGHT_GATEWAY_*`` plus the shared ``HINDSIGHT_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from hindsight.common.family import DEFAULT_FAMILY, FALLBACK_HEADS
from hindsight.common.ports import GRPC_PORTS, PORTS
from hindsight.common.settings import BaseServiceSettings
from hindsight.common.tls import (
    check_client_tls_settings,
    check_server_tls_settings,
    empty_is_unset,
)
from hindsight.gateway.domain.breaker import BreakerConfig
from hindsight.gateway.domain.heads import HeadDefaults

_BREAKER = BreakerConfig()

__all__ = ["GatewaySettings"]

_PREFIX = "HINDSIGHT_GATEWAY_"


class GatewaySettings(BaseServiceSettings):
    """Everything the gateway reads from the environment."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore", populate_by_name=True)

    grpc_host: str = Field(default="127.0.0.1", description="gRPC bind address.")
    grpc_port: int = Field(
        default=GRPC_PORTS["gateway"], ge=0, le=65535, description="gRPC Scoring port."
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
        default=PORTS["gateway"].http, ge=0, le=65535, description="HTTP port (ops + routes)."
    )
    scorers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [f"127.0.0.1:{GRPC_PORTS['scorer']}"],
        description="Scorer endpoints, comma-separated gRPC targets (host:port, or "
        "dns:///name:port for a DNS name with several addresses, balanced by gRPC).",
    )
    default_model: str = Field(
        default="trade_success", min_length=1, description="Model of calls that name none."
    )
    default_deadline_ms: float = Field(
        default=100.0, gt=0, description="Budget of calls that carry no deadline."
    )
    deadline_margin_ms: float = Field(
        default=5.0, ge=0, description="Kept from the budget to build and send the answer."
    )
    deadline_margin_ratio: float = Field(
        default=0.1, ge=0, lt=1, description="Margin as a share of the budget (the larger wins)."
    )
    fallback_p_success: float = Field(
        default=0.0, ge=0, le=1, description="p_success of fallback answers (0 = don't trade)."
    )
    default_family: str = Field(
        default=DEFAULT_FAMILY,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Family of Predict calls that name none (for routing).",
    )
    # Defaults: FALLBACK_HEADS (hindsight.common.family), the one source of the head defaults.
    fallback_entry: float = Field(
        default=FALLBACK_HEADS["entry"], gt=0, lt=1, description="conf_pat of a fallback head."
    )
    fallback_risk: float = Field(
        default=FALLBACK_HEADS["risk"], gt=0, allow_inf_nan=False, description="sl_katr (ATR)."
    )
    fallback_rr: float = Field(
        default=FALLBACK_HEADS["rr"], gt=0, allow_inf_nan=False, description="rr_target (R)."
    )
    fallback_offset: float = Field(
        default=FALLBACK_HEADS["offset"],
        allow_inf_nan=False,
        description="offset_katr (ATR); its sign gives the entry style.",
    )
    max_in_flight: int = Field(
        default=256, ge=1, description="Bulkhead: calls in flight before 'overloaded' fallbacks."
    )
    # Defaults: BreakerConfig's, the one source of the breaker policy.
    breaker_window: int = Field(
        default=_BREAKER.window_size, ge=1, description="Sliding window size (calls)."
    )
    breaker_min_calls: int = Field(
        default=_BREAKER.min_calls, ge=1, description="Calls before rates count."
    )
    breaker_failure_rate: float = Field(
        default=_BREAKER.failure_rate, gt=0, le=1, description="Opens at ≥ this."
    )
    breaker_slow_rate: float = Field(
        default=_BREAKER.slow_rate, gt=0, le=1, description="Opens at ≥ this."
    )
    breaker_slow_call_ms: float = Field(
        default=_BREAKER.slow_call_s * 1000.0, gt=0, description="A slow call (ms)."
    )
    breaker_open_s: float = Field(
        default=_BREAKER.open_s, ge=0, description="OPEN before HALF_OPEN (s)."
    )
    breaker_half_open_calls: int = Field(
        default=_BREAKER.half_open_calls, ge=1, description="Probe calls."
    )
    shadow_deadline_ms: float = Field(default=200.0, gt=0, description="Shadow call deadline.")
    shadow_max_in_flight: int = Field(
        default=32, ge=1, description="Shadow calls at once; more are skipped (counted)."
    )
    log_queue_size: int = Field(
        default=10_000, ge=1, description="Predictions waiting to be logged; oldest dropped."
    )
    log_max_in_flight: int = Field(
        default=32,
        ge=1,
        validation_alias=AliasChoices(
            "HINDSIGHT_GATEWAY_LOG_MAX_IN_FLIGHT",
            "HINDSIGHT_GATEWAY_LOG_BATCH_SIZE",  # its old name, still read
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
    scorer_tls_ca_file: Path | None = Field(
        default=None, description="PEM CA of the scorers' certificates: TLS to the scorers."
    )
    scorer_tls_cert_file: Path | None = Field(
        default=None, description="PEM client certificate shown to scorers (mutual TLS)."
    )
    scorer_tls_key_file: Path | None = Field(
        default=None, description="PEM private key of the scorer client certificate."
    )
    scorer_tls_server_name: str | None = Field(
        default=None, description="Name the scorer certificate must match (default: target host)."
    )

    @field_validator(
        "tls_cert_file",
        "tls_key_file",
        "tls_client_ca_file",
        "scorer_tls_ca_file",
        "scorer_tls_cert_file",
        "scorer_tls_key_file",
        "scorer_tls_server_name",
        mode="before",
    )
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
        check_client_tls_settings(
            f"{_PREFIX}SCORER_TLS_",
            ca_file=self.scorer_tls_ca_file,
            cert_file=self.scorer_tls_cert_file,
            key_file=self.scorer_tls_key_file,
            server_name=self.scorer_tls_server_name,
        )
        return self

    @field_validator("scorers", mode="before")
    @classmethod
    def _split_scorers(cls, value: object) -> list[str]:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list | tuple):
            raise ValueError("expected a comma-separated list of host:port targets")
        targets = [str(v).strip() for v in value if str(v).strip()]
        if not targets:
            raise ValueError("at least one scorer endpoint is needed")
        if len(set(targets)) != len(targets):
            raise ValueError("scorer endpoints must be distinct")
        return targets

    def head_defaults(self) -> HeadDefaults:
        """What each head of a Predict answers when it falls back."""
        return HeadDefaults(
            entry=self.fallback_entry,
            risk=self.fallback_risk,
            rr=self.fallback_rr,
            offset=self.fallback_offset,
        )

    def breaker_config(self) -> BreakerConfig:
        """The breaker thresholds of every endpoint."""
        return BreakerConfig(
            window_size=self.breaker_window,
            min_calls=min(self.breaker_min_calls, self.breaker_window),
            failure_rate=self.breaker_failure_rate,
            slow_rate=self.breaker_slow_rate,
            slow_call_s=self.breaker_slow_call_ms / 1000.0,
            open_s=self.breaker_open_s,
            half_open_calls=self.breaker_half_open_calls,
        )
