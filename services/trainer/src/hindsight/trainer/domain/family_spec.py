"""A model family's declared training data: which signals and which Back-Labeler labels.

A family (``hindsight.common.family``) trains every head at once on the signals its
:class:`FamilySpec` selects (feature schema version, optional symbol and timeframe
allow-lists) joined with their ``signal.labeled`` labels of one label spec: the configured
``label_spec``, or when none is configured the newest spec the trainer has seen
(:func:`choose_label_spec`), recorded in the run and the release.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hindsight.common.artifacts import validate_name
from hindsight.common.errors import InvalidInputError
from hindsight.common.family import format_version, parse_version
from hindsight.trainer.domain.data_spec import allow_list

__all__ = ["FamilySpec", "choose_label_spec", "family_catalog", "next_family_version"]

_SPEC_HASH = re.compile(r"^[0-9a-f]{16}$")


class FamilySpec(BaseModel):
    """The rows one family trains on (README: Model families)."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    family: str
    """The family's name: ``POST /v1/runs {"model_name": family}`` trains it."""
    feature_schema_version: int = Field(ge=1)
    """Only signals of this ``feature_schema_version``."""
    symbols: tuple[str, ...] | None = None
    """Only these symbols (None: every symbol)."""
    timeframes: tuple[str, ...] | None = None
    """Only these timeframes (None: every timeframe)."""
    label_spec: str | None = None
    """The Back-Labeler's label spec hash (16 hex digits) whose labels the heads learn;
    None: the newest spec seen when the run starts."""

    @field_validator("family")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return validate_name(value, field="family")
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

    @field_validator("label_spec")
    @classmethod
    def _label_spec(cls, value: str | None) -> str | None:
        if value is not None and not _SPEC_HASH.match(value):
            raise ValueError("label_spec must be 16 lower-case hex digits (a spec hash)")
        return value


def family_catalog(
    declared: Iterable[FamilySpec], default: FamilySpec, *, models: Iterable[str] = ()
) -> Mapping[str, FamilySpec]:
    """Families by name: the declared ones, plus ``default`` unless its family is declared.

    Raises ValueError when a family is declared twice or shares its name with a single
    model (``models``): ``POST /v1/runs {"model_name": ...}`` must name one thing.
    """
    catalog: dict[str, FamilySpec] = {}
    for spec in declared:
        if spec.family in catalog:
            raise ValueError(f"families: family {spec.family!r} is declared twice")
        catalog[spec.family] = spec
    catalog.setdefault(default.family, default)
    clash = sorted(set(catalog) & set(models))
    if clash:
        raise ValueError(f"families: {', '.join(clash)} is also a single model's name")
    return catalog


def choose_label_spec(spec: FamilySpec, newest_seen: str | None) -> str | None:
    """The label spec a run of ``spec`` trains on: the configured one, else the newest spec
    seen among the family's signals (None when none of them was ever labelled)."""
    return spec.label_spec if spec.label_spec is not None else newest_seen


def next_family_version(
    releases: Iterable[tuple[str, int | None]], feature_schema_version: int
) -> str:
    """The version of a family's next release, given its existing ones as ``(version,
    feature_schema_version)`` (None where unreadable): ``v1_0_0`` for the first; a minor
    over the newest release when that one has the same feature schema (a retrain); else
    the next major (the feature schema changed). Always above every existing version."""
    newest = max(
        ((parse_version(v, field="version"), schema) for v, schema in releases),
        default=None,
        key=lambda item: item[0],
    )
    if newest is None:
        return format_version(1, 0, 0)
    (major, minor, _), schema = newest
    if schema == feature_schema_version:
        return format_version(major, minor + 1, 0)
    return format_version(major + 1, 0, 0)
