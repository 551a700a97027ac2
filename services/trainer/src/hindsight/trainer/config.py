"""Trainer settings: ``HINDSIGHT_TRAINER_*`` plus the shared ``HINDSIGHT_*`` variables."""

from __future__ import annotations

from datetime import time

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from hindsight.common.family import DEFAULT_FAMILY
from hindsight.common.ports import PORTS, local_url
from hindsight.common.settings import BaseServiceSettings
from hindsight.trainer.domain.data_spec import DataSpec, spec_catalog
from hindsight.trainer.domain.family_spec import FamilySpec, family_catalog

__all__ = ["TrainerSettings"]


class TrainerSettings(BaseServiceSettings):
    """What the trainer reads from the environment (README: Configuration)."""

    model_config = SettingsConfigDict(
        env_prefix="HINDSIGHT_TRAINER_",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=PORTS["trainer"].http, ge=0, le=65535)
    model_name: str = "trade_success"
    feature_schema_version: int = Field(
        default=1,
        ge=1,
        description="The default model's feature_schema_version (its data spec, unless "
        "data_specs declares that model).",
    )
    data_specs: list[DataSpec] = Field(
        default_factory=list,
        description='More models, JSON: [{"model_name": "m", "feature_schema_version": 2, '
        '"symbols": ["BTCUSDT"], "timeframes": ["1h"]}] (README: Data specs).',
    )
    families: list[FamilySpec] = Field(
        default_factory=list,
        description='Model families, JSON: [{"family": "playbook", "feature_schema_version": '
        '2, "symbols": ["BTCUSDT"], "timeframes": ["1h"], "label_spec": "<16 hex>"}]; '
        "playbook is always there (on feature_schema_version, every symbol and timeframe, the "
        "newest label spec) unless declared (README: Model families).",
    )
    dask_scheduler: str | None = Field(
        default=None,
        description="Dask scheduler address (tcp://dask-scheduler:8786): full retrains fit "
        "their boosters there through lightgbm.dask; empty: in this process "
        "(docs/deploy.md, Distributed training).",
    )
    registry_url: str | None = Field(
        default=local_url("registry"),
        description="Registry base URL, to evaluate the production model; empty disables.",
    )
    # Outcomes
    outcome_threshold: float = Field(default=0.005, ge=0, lt=1)
    outcome_thresholds: dict[str, float] = Field(
        default_factory=dict, description='Per timeframe, JSON: {"1m": 0.001, "1d": 0.01}.'
    )
    # Ingest
    schema_check_enabled: bool = Field(
        default=True,
        description="Check signal.features against the registry's feature schema of their "
        "version (needs registry_url).",
    )
    schema_unknown_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a version the registry does not know is "
        "accepted unchecked before asking again.",
    )
    schema_retry_s: float = Field(
        default=5.0,
        gt=0,
        description="After the registry did not answer, events go "
        "unchecked this long before it is asked again.",
    )
    ingest_batch_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="signal.features / signal.outcome messages fetched and written at once "
        "(one multi-row upsert per fetch).",
    )
    # Runs and schedule
    schedule_enabled: bool = True
    daily_incremental_at: time = time(1, 0)
    weekly_full_at: time = time(1, 0)
    weekly_full_weekday: int = Field(default=6, ge=0, le=6, description="0 = Monday, 6 = Sunday")
    min_new_outcomes: int = Field(default=100, ge=0)
    auto_train_outcomes: int = Field(
        default=0,
        ge=0,
        description="Train when this many outcomes arrived since the last run that trained "
        "or tried to, whatever the registry made of it (0 = off: only the schedule and "
        "requests start runs).",
    )
    auto_train_interval_s: float = Field(
        default=300.0, ge=1, description="At most one data-triggered run per this many seconds."
    )
    auto_train_quiet_s: float = Field(
        default=0.0,
        ge=0,
        description="Also train once no outcome arrived for this many seconds, when at least "
        "one arrived since the last run and enough since the last version the registry "
        "accepted (min_new_outcomes; min_rows while none was accepted): a burst ended, or a "
        "refused run was followed by a few more outcomes, so learn from all of them instead "
        "of waiting for the next burst (0 = off).",
    )
    family_auto_train_labels: int = Field(
        default=0,
        ge=0,
        description="Model families: train a family when this many of its signals got a "
        "signal.labeled label (new or revised) since its last run that trained or tried to; "
        "also once labels went quiet for auto_train_quiet_s with enough untrained ones "
        "(min_new_outcomes; min_rows while no release was accepted). At most one run per "
        "auto_train_interval_s (0 = off: only POST /v1/runs and training.requested).",
    )
    # Data-quality gate
    min_rows: int = Field(default=500, ge=10)
    max_missing_share: float = Field(default=0.3, ge=0, le=1)
    # Training
    seed: int = 42
    num_threads: int = Field(default=2, ge=1)
    num_boost_round: int = Field(default=500, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=31, ge=2)
    cv_folds: int = Field(default=5, ge=0)
    embargo_frac: float = Field(default=0.01, ge=0, lt=0.2)
    embargo_s: float = Field(default=0.0, ge=0)
    bootstrap_resamples: int = Field(default=200, ge=0)
    rejected_label_weight: float = Field(default=0.5, ge=0)
    # Recommendation gates
    trade_threshold: float = Field(default=0.55, gt=0, lt=1)
    min_sharpe: float = 1.0
    min_win_rate: float = 0.55
    max_drawdown: float = 0.20
    min_trades: int = 30
    min_improvement: float = 0.05

    # Live drift of signal.features against the production model's reference
    drift_enabled: bool = True
    drift_window: int = Field(default=2000, ge=1, description="Live signals in the window.")
    drift_min_rows: int = Field(default=200, ge=1, description="Signals before drift is reported.")
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    drift_refresh_s: float = Field(
        default=60.0, gt=0, description="How often the production reference is re-read."
    )
    drift_export_s: float = Field(default=15.0, gt=0, description="Gauge refresh period.")

    def specs(self) -> dict[str, DataSpec]:
        """Data specs by model name: ``data_specs`` plus the default model's own."""
        default = DataSpec(
            model_name=self.model_name, feature_schema_version=self.feature_schema_version
        )
        return dict(spec_catalog(self.data_specs, default))

    def family_specs(self) -> dict[str, FamilySpec]:
        """Family specs by family name: ``families`` plus the default family's own."""
        default = FamilySpec(
            family=DEFAULT_FAMILY, feature_schema_version=self.feature_schema_version
        )
        return dict(family_catalog(self.families, default, models=self.specs()))

    @model_validator(mode="after")
    def _specs_distinct(self) -> TrainerSettings:
        self.specs()
        self.family_specs()
        return self

    @field_validator("registry_url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else None
