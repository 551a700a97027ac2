"""Feature schemas: what a ``feature_schema_version`` declares, its hash, and the event check.

A schema is registered once in the registry (``PUT /v1/feature-schemas/{version}``) and never
changes: the version names one ordered list of features (name, dtype, allowed range, missing
policy) and :meth:`FeatureSchema.content_hash` fingerprints that list, so two producers can no
longer send different lists under one number. :func:`check_features` is the pure check the
consumers of ``signal.features`` (trainer, scorer, market) run against the declared schema; an
event that fails it goes to the dead-letter stream naming the field (:func:`require_features`).
It lives here, not in the registry, because those services check events without calling it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import FiniteFloat, NonEmptyStr, PositiveInt

__all__ = [
    "MAX_FEATURES",
    "FeatureList",
    "FeatureSchema",
    "FeatureSpec",
    "Violation",
    "check_features",
    "features_hash",
    "require_features",
]

MAX_FEATURES = 4096
"""More features than any model here takes; bounds the registry's stored JSON."""

Dtype = Literal["float", "int", "bool"]


def _normalised_missing(policy: str) -> str:
    """A missing policy written one way (``fill:0`` → ``fill:0.0``); ValueError when bad."""
    if policy in ("allow", "reject"):
        return policy
    kind, sep, text = policy.partition(":")
    if kind != "fill" or not sep:
        raise ValueError("must be 'allow', 'reject' or 'fill:<number>'")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"fill value {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"fill value {text!r} is not finite")
    return f"fill:{value + 0.0!r}"  # + 0.0: -0.0 and 0.0 are one value, one hash


def _dtype_problem(dtype: Dtype, value: float) -> str | None:
    if dtype == "int" and not value.is_integer():
        return f"{value!r} is not an integer (dtype int)"
    if dtype == "bool" and value not in (0.0, 1.0):
        return f"{value!r} is not 0 or 1 (dtype bool)"
    return None


def _range_problem(spec: FeatureSpec, value: float) -> str | None:
    if spec.min is not None and value < spec.min:
        return f"{value!r} is below min {spec.min!r}"
    if spec.max is not None and value > spec.max:
        return f"{value!r} is above max {spec.max!r}"
    return None


class FeatureSpec(BaseModel):
    """One declared feature: its name, dtype, allowed range (inclusive) and missing policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: NonEmptyStr
    dtype: Dtype = "float"
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    missing: str = "allow"
    """``allow`` (null passes), ``reject`` (null or absent is bad input) or ``fill:<value>``."""

    @field_validator("min", "max")
    @classmethod
    def _one_zero(cls, value: float | None) -> float | None:
        return None if value is None else float(value) + 0.0

    @field_validator("missing")
    @classmethod
    def _policy(cls, value: str) -> str:
        return _normalised_missing(value)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min!r} is above max {self.max!r}")
        fill = self.fill_value
        if fill is not None:
            problem = _dtype_problem(self.dtype, fill) or _range_problem(self, fill)
            if problem:
                raise ValueError(f"missing: fill value {problem}")
        return self

    @property
    def fill_value(self) -> float | None:
        """The value a missing feature takes under ``fill:<value>``; None otherwise."""
        if not self.missing.startswith("fill:"):
            return None
        return float(self.missing.removeprefix("fill:"))


def _unique_names(features: list[FeatureSpec]) -> list[FeatureSpec]:
    seen: dict[str, int] = {}
    for index, spec in enumerate(features):
        if spec.name in seen:
            raise ValueError(
                f"features[{index}].name: {spec.name!r} is declared twice "
                f"(first at features[{seen[spec.name]}])"
            )
        seen[spec.name] = index
    return features


FeatureList = Annotated[
    list[FeatureSpec],
    Field(min_length=1, max_length=MAX_FEATURES),
    AfterValidator(_unique_names),
]
"""1..4096 declared features with distinct names, in the model's input order."""


class FeatureSchema(BaseModel):
    """A ``feature_schema_version`` and the ordered features it declares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: PositiveInt
    features: FeatureList

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the ordered features (not of the version).

        Canonical: keys sorted, no spaces, every field written (an omitted default and the
        same value written out hash alike). Order of the features matters; key order does not.
        """
        return features_hash(self.features)

    def names(self) -> list[str]:
        """The feature names in declared order (the model's input order)."""
        return [spec.name for spec in self.features]


def features_hash(features: list[FeatureSpec]) -> str:
    """sha256 (hex) of the canonical JSON of ``features`` in their order."""
    text = json.dumps(
        [spec.model_dump(mode="json") for spec in features],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


class Violation(BaseModel):
    """One feature of an event that does not match its schema, and why."""

    model_config = ConfigDict(frozen=True)

    field: str
    """The feature's name (``features.<name>`` on the event)."""
    reason: str

    def __str__(self) -> str:
        return f"features.{self.field}: {self.reason}"


def _value_problem(spec: FeatureSpec, value: object) -> str | None:
    if value is None:
        return "missing (the schema rejects a missing value)" if spec.missing == "reject" else None
    # bool is an int; a JSON true/false never gets here (events parse features strictly).
    if not isinstance(value, int | float):
        return f"{type(value).__name__} is not a number"
    number = float(value)
    if not math.isfinite(number):
        return f"{number!r} is not finite"
    return _dtype_problem(spec.dtype, number) or _range_problem(spec, number)


def check_features(schema: FeatureSchema, features: Mapping[str, float | None]) -> list[Violation]:
    """Every mismatch between ``features`` and ``schema``; empty when they match.

    Declared features are checked in declared order (absent counts as missing), then the
    undeclared names in the event's order.
    """
    violations: list[Violation] = []
    for spec in schema.features:
        problem = _value_problem(spec, features.get(spec.name))
        if problem:
            violations.append(Violation(field=spec.name, reason=problem))
    declared = {spec.name for spec in schema.features}
    violations.extend(
        Violation(field=name, reason=f"unknown feature (not in feature schema v{schema.version})")
        for name in features
        if name not in declared
    )
    return violations


def require_features(schema: FeatureSchema, features: Mapping[str, float | None]) -> None:
    """:func:`check_features`, raising InvalidInputError (dead letter) naming the first field."""
    violations = check_features(schema, features)
    if violations:
        first, *rest = violations
        reason = first.reason + "".join(f"; {v}" for v in rest)
        raise InvalidInputError(reason, field=f"features.{first.field}")
