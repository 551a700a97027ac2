"""A model's declared training data: which signals it learns from, and what it predicts.

Each model trains only on the rows its :class:`DataSpec` selects (feature schema version,
optional symbol and timeframe allow-lists); a model without a spec has no data (never "all
rows"), so one client's new model cannot take over another model's runs.

Specs come from the settings (``HINDSIGHT_TRAINER_DATA_SPECS``, no ``version``) or are
registered over HTTP (``PUT /v1/data-specs/{model_name}``, numbered versions): a model's
newest registered version wins over its settings. ``content_hash`` names what a spec selects
and predicts (everything but ``version``), so one version always means one content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hindsight.common.artifacts import validate_name
from hindsight.common.errors import InvalidInputError
from hindsight.trainer.domain.rows import TrainingRow

__all__ = ["allow_list", "DataSpec", "Target", "select_rows", "spec_catalog"]

Target = Literal["realised_outcome"]
"""What the model predicts. ``realised_outcome``: the trade's result, win = 1, loss and
breakeven = 0. Other targets (``y_entry``, quantiles) join this union later."""


def allow_list(value: tuple[str, ...] | None, field: str) -> tuple[str, ...] | None:
    """A symbol / timeframe allow-list, sorted and deduplicated; None selects everything."""
    if value is None:
        return None
    if not value:
        raise ValueError(f"{field}: an empty allow-list selects nothing (omit it for all)")
    if any(not item for item in value):
        raise ValueError(f"{field}: empty name")
    return tuple(sorted(set(value)))


class DataSpec(BaseModel):
    """The rows one model trains on (README: Data specs)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    model_name: str
    feature_schema_version: int = Field(ge=1)
    """Only signals of this ``feature_schema_version``."""
    symbols: tuple[str, ...] | None = None
    """Only these symbols (None: every symbol)."""
    timeframes: tuple[str, ...] | None = None
    """Only these timeframes (None: every timeframe)."""
    target: Target = "realised_outcome"
    version: int | None = Field(default=None, ge=1)
    """The registered version (``PUT /v1/data-specs``); None: declared in the settings."""

    @field_validator("model_name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return validate_name(value, field="model_name")
        except InvalidInputError as exc:
            raise ValueError(exc.reason) from None

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return allow_list(value, "symbols")

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return allow_list(value, "timeframes")

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of every field but ``version``."""
        body = self.model_dump(mode="json", exclude={"version"})
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def matches(self, row: TrainingRow) -> bool:
        """Whether ``row`` is one of this model's rows (the storage's SQL filter, in Python)."""
        return (
            row.feature_schema_version == self.feature_schema_version
            and (self.symbols is None or row.symbol in self.symbols)
            and (self.timeframes is None or row.timeframe in self.timeframes)
        )


def select_rows(spec: DataSpec, rows: Iterable[TrainingRow]) -> list[TrainingRow]:
    """The rows of ``rows`` that ``spec`` selects, in their order."""
    return [row for row in rows if spec.matches(row)]


def spec_catalog(declared: Iterable[DataSpec], default: DataSpec) -> Mapping[str, DataSpec]:
    """Specs by model name: the declared ones, plus ``default`` unless its model is declared.

    Raises ValueError when a model is declared twice.
    """
    catalog: dict[str, DataSpec] = {}
    for spec in declared:
        if spec.model_name in catalog:
            raise ValueError(f"data_specs: model {spec.model_name!r} is declared twice")
        catalog[spec.model_name] = spec
    catalog.setdefault(default.model_name, default)
    return catalog
