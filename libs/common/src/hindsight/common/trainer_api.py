"""The trainer's public read model: runs (``POST /v1/runs``, ``GET /v1/runs``,
``GET /v1/runs/{run_id}``).

These are the trainer's own records: its storage builds :class:`TrainingRun` and
:class:`RunSummary` from the ``runs`` table, its HTTP API answers with the public forms, and
the clients that read those answers (the operator CLI's ``hindsight train``) read them into
the same classes. They live here, not in the trainer, because a client must not depend on the
trainer service: it would pull in lightgbm, onnx and the service itself for a few pydantic
classes. The trainer re-exports each name from where it was defined before
(``hindsight.trainer.storage``, ``hindsight.trainer.http_api``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Self, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from hindsight.common.http import IsoDatetime

__all__ = [
    "JsonObject",
    "RunAccepted",
    "RunCreate",
    "RunMode",
    "RunPublic",
    "RunStatus",
    "RunSummary",
    "RunSummaryPublic",
    "TrainingRun",
]

JsonObject: TypeAlias = dict[str, Any]
"""A JSON object without a schema of its own: a model card's free-form metrics, a run's
report (the same alias as ``hindsight.trainer.domain.jsonsafe.JsonObject``)."""

RunMode = Literal["full", "incremental"]
RunStatus = Literal["running", "completed", "failed", "skipped"]

_JSON_COLUMNS = frozenset({"metrics", "report", "headline"})


class _RunColumns(BaseModel):
    """The columns of a ``runs`` row that every read returns."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    run_id: str
    model_name: str
    mode: RunMode
    trigger: str
    """Who asked: ``api``, ``schedule``, ``data`` or ``event``."""
    status: RunStatus
    reason: str | None
    requested_by: str | None
    error: str | None
    """Why a run failed or was skipped."""
    created_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    version: str | None
    artifact_uri: str | None
    sha256: str | None
    dataset_size: int | None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Self:
        """The record as read; its JSON columns arrive as text."""
        values = dict(record)
        for key, value in values.items():
            if key in _JSON_COLUMNS and isinstance(value, str):
                values[key] = json.loads(value)
        return cls.model_validate(values)


class TrainingRun(_RunColumns):
    """One training run, from its request to its end state (a ``runs`` row)."""

    metrics: JsonObject | None
    """The model card's metrics (free-form: headline, test, trading, ...)."""
    report: JsonObject | None
    """What the run found on the way (free-form: quality report, parity, row counts)."""


class RunSummary(_RunColumns):
    """A run as the list shows it: its metrics' headline instead of metrics and report."""

    headline: JsonObject | None
    """The headline metrics (free-form, as the card has them)."""


class RunCreate(BaseModel):
    """Body of POST /v1/runs."""

    model_name: str | None = Field(default=None, description="Default: the trainer's model.")
    mode: Literal["full", "incremental"] = "full"
    reason: str | None = None
    requested_by: str | None = None


class RunAccepted(BaseModel):
    """Answer of POST /v1/runs: the run started (``running``) or why it was ``skipped``."""

    model_config = ConfigDict(frozen=True)

    training_run_id: str
    status: RunStatus
    model_name: str
    mode: RunMode
    error: str | None


class RunPublic(TrainingRun):
    """A run with its metrics and report (GET /v1/runs/{run_id})."""

    created_at: IsoDatetime
    finished_at: IsoDatetime | None
    training_run_id: str
    """The run id again, under the name the events use."""

    @classmethod
    def of_run(cls, run: TrainingRun) -> RunPublic:
        """The public view of ``run``."""
        return cls(**run.model_dump(), training_run_id=run.run_id)


class RunSummaryPublic(RunSummary):
    """A run in the list (GET /v1/runs): its headline metrics, no report."""

    created_at: IsoDatetime
    finished_at: IsoDatetime | None
    training_run_id: str
    """The run id again, under the name the events use."""

    @classmethod
    def of_summary(cls, run: RunSummary) -> RunSummaryPublic:
        """The public view of ``run``."""
        return cls(**run.model_dump(), training_run_id=run.run_id)
