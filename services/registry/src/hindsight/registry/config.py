"""Registry settings: ``HINDSIGHT_REGISTRY_*`` plus the shared ``HINDSIGHT_*`` ones."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from hindsight.common.ports import PORTS
from hindsight.common.settings import BaseServiceSettings
from hindsight.registry.domain import DegradationPolicy, GatePolicy

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
    http_port: int = Field(
        default=PORTS["registry"].http, ge=0, le=65535, description="HTTP port (0: any free)."
    )
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
    require_recommendation: bool = Field(
        default=True,
        description="Gate: the trainer's trading recommendation must not be REJECT. The dev "
        "stack turns it off so the first run promotes on real data without an edge.",
    )
    max_coverage_error: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="Gate, family quantile members: how far the test coverage Pr[y <= pred] "
        "may be from each alpha (0.03: within 3 points).",
    )
    max_pinball_ratio: float = Field(
        default=1.0,
        gt=0,
        description="Gate, family quantile members: pinball loss at the served alpha over the "
        "constant-quantile baseline's, at most (1.0: no worse than the baseline).",
    )
    manual_approval: bool = Field(
        default=False,
        description="Versions that pass the gates wait in staging for POST promote. "
        "Off in dev; the production config sets it to true.",
    )
    outbox_poll_s: float = Field(
        default=1.0, gt=0, description="How often the outbox relay looks for unsent events."
    )
    prediction_batch_size: int = Field(
        default=256,
        ge=1,
        le=4096,
        description="prediction.logged messages fetched and written per batch (one INSERT).",
    )
    prediction_batch_pause_s: float = Field(
        default=0.1,
        ge=0,
        description="Pause after a full batch of predictions: a catch-up over a backlog "
        "(after a restart) leaves CPU to the Score path between batches.",
    )

    auto_promote_experiments: bool = Field(
        default=False,
        description="Default of an experiment's auto_promote: apply a promote decision at "
        "once instead of waiting for POST /v1/experiments/{id}/approve.",
    )
    evaluate_every_s: float = Field(
        default=30.0, gt=0, description="How often the evaluator looks at active experiments."
    )
    experiment_max_duration_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="An active experiment older than this ends (inconclusive unless decided).",
    )
    experiment_max_samples_per_arm: int = Field(
        default=5000,
        ge=2,
        description="An experiment whose both arms have this many outcomes ends.",
    )
    auto_rollback: bool = Field(
        default=True,
        description="Roll production back when the degradation monitor sees it degrade.",
    )
    degradation_window: int = Field(
        default=50, ge=2, description="Outcomes in the rolling window (and needed to judge)."
    )
    degradation_max_win_rate_drop: float = Field(
        default=0.10, ge=0, le=1, description="Allowed drop of the rolling win rate vs the card."
    )
    degradation_max_brier_rise: float = Field(
        default=0.05, ge=0, le=1, description="Allowed rise of the rolling Brier vs the card."
    )
    degradation_debounce_s: float = Field(
        default=1.0,
        ge=0,
        description="After outcomes arrive, wait this long (batching) before checking.",
    )

    def degradation_policy(self) -> DegradationPolicy:
        """The degradation thresholds as a domain object."""
        return DegradationPolicy(
            window=self.degradation_window,
            max_win_rate_drop=self.degradation_max_win_rate_drop,
            max_brier_rise=self.degradation_max_brier_rise,
        )

    def gate_policy(self) -> GatePolicy:
        """The gate thresholds as a domain object."""
        return GatePolicy(
            min_test_roc_auc=self.min_test_roc_auc,
            max_ece=self.max_ece,
            min_test_rows=self.min_test_rows,
            max_worse_than_production=self.max_worse_than_production,
            require_recommendation=self.require_recommendation,
            max_coverage_error=self.max_coverage_error,
            max_pinball_ratio=self.max_pinball_ratio,
        )
