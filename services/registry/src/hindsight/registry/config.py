"""Registry settings: ``HINDSIGHT_REGISTRY_*`` plus the shared ``HINDSIGHT_*`` ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from hindsight.common.settings import BaseServiceSettings
from hindsight.registry.domain import GatePolicy

__all__ = ["RegistrySettings"]


class RegistrySettings(BaseServiceSettings):
    """What the registry reads from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_REGISTRY_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    http_host: str = Field(default="127.0.0.1", description="HTTP bind address.")
    http_port: int = Field(default=8082, ge=0, le=65535, description="HTTP port (0: any free).")
    min_test_roc_auc: float = Field(
        default=0.55, ge=0, le=1, description="Gate: test ROC-AUC floor."
    )
    max_ece: float = Field(default=0.10, ge=0, le=1, description="Gate: test ECE ceiling.")
    min_test_rows: int = Field(default=200, ge=0, description="Gate: rows in the test block.")
    max_worse_than_production: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Gate: how much lower than production's ROC-AUC on the same block is allowed.",
    )
    manual_approval: bool = Field(
        default=False,
        description="Versions that pass the gates wait in staging for POST promote. "
        "Off in dev; the production config sets it to true.",
    )
    outbox_poll_s: float = Field(
        default=1.0, gt=0, description="How often the outbox relay looks for unsent events."
    )

    def gate_policy(self) -> GatePolicy:
        """The gate thresholds as a domain object."""
        return GatePolicy(
            min_test_roc_auc=self.min_test_roc_auc,
            max_ece=self.max_ece,
            min_test_rows=self.min_test_rows,
            max_worse_than_production=self.max_worse_than_production,
        )
