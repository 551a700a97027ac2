"""Loaded models and the store the hot path reads them from.

The store is copy-on-write: installing or removing a model builds new dicts and swaps
them in one assignment, so a call never sees a half-installed model. Loading (files,
sha256, ONNX session, warm-up) happens elsewhere; the store only holds finished models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hindsight.common.artifacts import ModelCard
from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.limits import truncated
from hindsight.scorer.domain.deployments import Deployment, Stage
from hindsight.scorer.domain.drift import DriftMonitor
from hindsight.scorer.domain.features import FeatureIndex, Matrix
from hindsight.scorer.domain.intervals import IntervalTable
from hindsight.scorer.domain.versioned import VersionedStore

__all__ = ["LoadedModel", "ModelStore", "Predictor"]


class Predictor(Protocol):
    """What scoring needs from a model runtime (ONNX Runtime + LightGBM in production)."""

    def predict(self, matrix: Matrix) -> npt.NDArray[np.float32]:
        """Calibrated P(win) per row of a float32 matrix in feature order."""
        ...

    def contributions(self, matrix: Matrix) -> npt.NDArray[np.float64]:
        """TreeSHAP per row: one column per feature, then the expected value (bias)."""
        ...


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A version ready to score: card, runtime, feature index and interval table."""

    deployment: Deployment
    card: ModelCard
    predictor: Predictor
    features: FeatureIndex
    intervals: IntervalTable
    loaded_at: datetime
    row: Matrix = field(repr=False)
    """A preallocated (1, n) input row for single scores; filled and used without awaiting."""
    drift: DriftMonitor | None = field(default=None, repr=False)
    """Rolling feature distributions of the scored rows (None: the card has no reference)."""

    @classmethod
    def build(
        cls,
        deployment: Deployment,
        card: ModelCard,
        predictor: Predictor,
        *,
        loaded_at: datetime,
        drift: DriftMonitor | None = None,
    ) -> LoadedModel:
        """Assemble a model from its card and runtime (and its drift monitor, if any)."""
        features = FeatureIndex.of(card.feature_names, card.nan_allowed)
        intervals = IntervalTable.from_bins([(b.lo, b.hi, b.n) for b in card.interval_bins])
        row = np.zeros((1, features.width), dtype=np.float32)
        return cls(deployment, card, predictor, features, intervals, loaded_at, row, drift)

    @property
    def name(self) -> str:
        """The model name."""
        return self.deployment.model_name

    @property
    def version(self) -> str:
        """The version string."""
        return self.deployment.version

    def with_stage(self, stage: Stage) -> LoadedModel:
        """The same loaded model under another stage (no reload)."""
        return replace(self, deployment=replace(self.deployment, stage=stage))


class ModelStore(VersionedStore[LoadedModel]):
    """Every loaded version, and per model the default (production) version."""

    def __init__(self, *, default_model: str) -> None:
        self.default_model = default_model
        super().__init__()

    def resolve(self, name: str | None, version: str | None) -> LoadedModel:
        """The model a call asks for; the errors name ``model_name`` / ``model_version``."""
        models = self._items
        if not models:
            raise UnavailableError("no model loaded yet")
        model_name = name or self.default_model
        if version:
            found = models.get((model_name, version))
            if found is not None:
                return found
            if model_name not in self._names:
                raise InvalidInputError(
                    f"unknown model {truncated(model_name)!r}", field="model_name"
                )
            raise InvalidInputError(
                f"version {truncated(version)!r} of {truncated(model_name)!r} is not loaded",
                field="model_version",
            )
        default = self._default.get(model_name)
        if default is not None:
            return models[(model_name, default)]
        if name and model_name not in self._names:
            raise InvalidInputError(f"unknown model {truncated(model_name)!r}", field="model_name")
        raise UnavailableError(f"no production version of {truncated(model_name)!r} is loaded")
