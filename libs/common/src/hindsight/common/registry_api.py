"""The registry's public read model: models, versions, experiments, evaluation reports.

These are the registry's own records: its storage builds them and its HTTP API answers with
them (``GET /v1/models``, ``/v1/models/{name}/versions``, ``/v1/experiments``,
``/v1/models/{name}/evaluation``; a version with its card from ``.../versions/{version}`` and
from the ``promote``, ``rollback`` and ``archive`` actions), and the clients that read those
answers (the operator CLI and the monthly report of ``hindsight-ops``) read them into the same
classes. They live here, not in the registry, because a client must not depend on the registry
service: it would pull in numpy, scipy, scikit-learn and the service itself for a few pydantic
classes. The registry re-exports each name from where it was defined before
(``hindsight.registry.domain``, ``hindsight.registry.storage``); its ``schemas`` subclass
:class:`VersionPublic` and :class:`VersionDetail` with the constructors from its records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from 3.12

__all__ = [
    "ArmResult",
    "CalibrationBin",
    "DailyMetrics",
    "Decision",
    "DegradationCheck",
    "EvaluationReport",
    "EvaluationRollback",
    "EvaluationVersion",
    "ExperimentKind",
    "ExperimentRecord",
    "ExperimentResult",
    "ExperimentSpan",
    "ExperimentState",
    "GateCheck",
    "Headline",
    "JsonObject",
    "ModelSummary",
    "PromotionState",
    "Row",
    "Stage",
    "StageMove",
    "TestDecision",
    "VersionDetail",
    "VersionKind",
    "VersionMetrics",
    "VersionPublic",
    "Volume",
]


VersionKind = Literal["model", "family"]
"""What a registered version is: one model (``models/...``) or a family release."""


class Row(BaseModel):
    """A typed, immutable row; :meth:`of` reads an asyncpg record, parsing its JSON columns."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of(cls, record: Mapping[str, Any], *json_columns: str) -> Self:
        """The row of ``record``; the ``json_columns`` arrive as text and are parsed first."""
        values = dict(record)
        for column in json_columns:
            if isinstance(values.get(column), str):
                values[column] = json.loads(values[column])
        return cls.model_validate(values)


class Stage(StrEnum):
    """Where a version stands. ``refused`` is terminal: a bad artifact is never promotable."""

    CANDIDATE = "candidate"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"
    REFUSED = "refused"


class ExperimentKind(StrEnum):
    """``canary``: the candidate gets a small share; ``ab``: a split; ``shadow``: scored aside."""

    CANARY = "canary"
    AB = "ab"
    SHADOW = "shadow"


class ExperimentState(StrEnum):
    """``active`` until decided (``completed``) or stopped without a decision (``cancelled``)."""

    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class PromotionState(StrEnum):
    """What became of a ``promote`` decision."""

    PENDING = "pending"
    APPLIED = "applied"
    STALE = "stale"


JsonObject: TypeAlias = dict[str, Any]
"""A JSON object without a schema of its own: a version's model card (``metrics.json``)."""

Decision = Literal["promote", "keep", "inconclusive"]
"""An experiment's verdict on the candidate."""


class Headline(TypedDict, total=False):
    """A version's headline: what the registry's gates read from its ``metrics.json``, every
    key, each None when absent.

    A refused version has no headline: the empty dict (the keys are left out, not null).
    """

    test_roc_auc: float | None
    test_ece: float | None
    test_rows: int | None
    production_version: str | None
    production_roc_auc: float | None
    """The production model on the SAME test block."""
    production_compared: bool | None
    """True: the trainer compared with a production model; False: it said there was none."""
    recommendation: str | None
    """PROMOTE / MONITOR / REJECT, upper case."""


@dataclass(frozen=True, slots=True)
class TestDecision:
    """The verdict of an experiment's test; ``winner`` is an arm role (candidate/control) or
    None."""

    decision: Decision
    winner: Literal["candidate", "control"] | None
    p_value: float | None
    statistic: float | None
    brier_difference: float | None
    """Candidate mean Brier minus control mean Brier (negative: the candidate is better)."""
    reason: str


@dataclass(frozen=True, slots=True)
class DegradationCheck:
    """Rolling numbers of a production version against its card; ``degraded`` with reasons."""

    n: int
    enough: bool
    win_rate: float | None
    brier: float | None
    expected_win_rate: float | None
    expected_brier: float | None
    degraded: bool
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line with the numbers (the rollback's audit reason)."""
        return "; ".join(self.reasons) if self.reasons else "within thresholds"


@dataclass(frozen=True, slots=True)
class GateCheck:
    """One gate's verdict; ``reason`` says why in words."""

    name: str
    passed: bool
    value: int | float | str | None
    threshold: int | float | str | None
    """int stays int (``test_rows`` 200) in the stored and served JSON."""
    reason: str


class VersionPublic(BaseModel):
    """A version as the API shows it (``GET /v1/models/{name}/versions``): its headline as
    ``metrics``, plus the recommendation."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    stage: Stage
    training_run_id: str
    created_at: datetime
    registered_at: datetime
    stage_changed_at: datetime
    artifact_uri: str
    sha256: str
    gates: list[GateCheck]
    gates_passed: bool
    refused_reason: str | None
    metrics: Headline
    """The headline the gates read (empty for a refused version)."""
    recommendation: str | None
    kind: VersionKind = "model"
    """``family``: a family release (``families/...``), gated member by member."""


class VersionDetail(VersionPublic):
    """A version with its full ``metrics.json`` (null for a refused version)."""

    card: JsonObject | None


class ModelSummary(Row):
    """A model: its number of versions and its production version."""

    model_name: str
    versions: int
    production_version: str | None


class ArmResult(Row):
    """One arm's version and outcome-joined metrics (None where undefined)."""

    version: str
    n: int
    wins: int
    win_rate: float | None
    mean_p: float | None
    roc_auc: float | None
    brier: float | None
    log_loss: float | None
    ece: float | None


class ExperimentResult(Row):
    """Per-arm metrics and the test's verdict (live, or as stored when the experiment ended)."""

    per_arm: dict[str, ArmResult]
    test: TestDecision


class ExperimentRecord(Row):
    """An experiment row."""

    experiment_id: str
    model_name: str
    kind: ExperimentKind
    control_version: str
    candidate_version: str
    candidate_share: float | None
    """None for shadow experiments."""
    min_samples_per_arm: int
    alpha: float
    auto_promote: bool
    state: ExperimentState
    decision: Decision | None
    winner: str | None
    """The winning version."""
    p_value: float | None
    result: ExperimentResult | None
    promotion: PromotionState | None
    started_at: datetime
    started_by: str
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None


class EvaluationVersion(Row):
    """A version of the model (every one, whatever the window)."""

    version: str
    stage: Stage
    created_at: datetime
    stage_changed_at: datetime
    headline: Headline
    gates_passed: bool
    feature_names: list[str] | None


class VersionMetrics(Row):
    """Scored signals of a version in the window and the metrics of the evaluated ones."""

    version: str
    predictions: int
    """Scored signals."""
    n: int
    """Evaluated ones (their outcome has a result)."""
    win_rate: float | None
    mean_p: float | None
    brier: float | None
    log_loss: float | None


class DailyMetrics(Row):
    """:class:`VersionMetrics` of one UTC day."""

    version: str
    day: date
    predictions: int
    n: int
    win_rate: float | None
    mean_p: float | None
    brier: float | None
    log_loss: float | None


class CalibrationBin(Row):
    """Evaluated signals of a version whose p falls in ``[lower, upper)``."""

    version: str
    bin: int
    n: int
    mean_p: float | None
    win_rate: float | None
    lower: float
    upper: float


class Volume(Row):
    """Predictions of a UTC day (any version of the model, or no model) and fallbacks."""

    day: date
    fallback: int
    predictions: int


class ExperimentSpan(ExperimentRecord):
    """An experiment of the model that overlaps the window: its row, written without the
    model's name (the report's own)."""

    model_name: str = Field(exclude=True)


class StageMove(Row):
    """A stage move of one of the model's versions in the window."""

    at: datetime
    actor: str
    action: str
    version: str
    from_stage: Stage | None
    to_stage: Stage
    reason: str
    experiment_id: str | None


class EvaluationRollback(Row):
    """A degradation rollback of one of the model's versions in the window."""

    version: str
    at: datetime
    rolled_back_to: str | None
    details: DegradationCheck


class EvaluationReport(Row):
    """Everything an evaluation report of a model over ``[from, to)`` needs."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    model_name: str
    from_: datetime = Field(alias="from")
    to: datetime
    production_version: str | None
    versions: list[EvaluationVersion]
    totals: list[VersionMetrics]
    daily: list[DailyMetrics]
    calibration: list[CalibrationBin]
    calibration_bins: int
    volume: list[Volume]
    experiments: list[ExperimentSpan]
    stage_moves: list[StageMove]
    degradation_rollbacks: list[EvaluationRollback]

    @model_validator(mode="before")
    @classmethod
    def _spans_of_this_model(cls, data: Any) -> Any:
        """Read back from JSON, each experiment gets the model's name the report wrote once."""
        if isinstance(data, Mapping) and isinstance(data.get("experiments"), list):
            name = data.get("model_name")
            spans = [
                {"model_name": name, **span} if isinstance(span, Mapping) else span
                for span in data["experiments"]
            ]
            data = {**data, "experiments": spans}
        return data
