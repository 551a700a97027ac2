"""What a model kind owns, and the pieces every kind shares (blocks, boosting, freezing).

A kind is one LightGBM objective with its targets, calibration, metrics on the untouched
time-later test block, ONNX output contract, parity check and gate figures. The family
trainer talks to kinds only through :class:`ModelKind`; adding a kind is one module here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from hindsight.common.family import MemberKind
from hindsight.trainer.domain.calibration import Calibrator
from hindsight.trainer.domain.fitting import FitRequest, Fitter, LocalFitter
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.training import TrainingParams, lgb_params

__all__ = [
    "Block",
    "FittedModel",
    "FloatArray",
    "ModelKind",
    "base_params",
    "boost",
    "float32_thresholds",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Block:
    """Rows of one time block: features (float32-exact), target, and what metrics need."""

    x: FloatArray
    y: FloatArray
    r: FloatArray | None = None
    """Realised R per row (binary: expected R at the threshold), when known."""
    group: npt.NDArray[np.object_] | None = None
    """A symbol/day key per row (binary: Precision@k per symbol and day), when known."""

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or len(self.x) != len(self.y):
            raise ValueError(f"block x {self.x.shape} and y {self.y.shape} do not match")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(slots=True)
class FittedModel:
    """A trained member before export: its boosters (frozen at the chosen iteration)."""

    kind: MemberKind
    boosters: list[lgb.Booster]
    """Binary: one booster; quantile: one per alpha, in ``alphas`` order."""
    feature_names: list[str]
    alphas: list[float] = field(default_factory=list)
    served_alpha: float | None = None
    calibrator: Calibrator | None = None
    value_range: tuple[float, float] | None = None
    baseline: list[float] = field(default_factory=list)
    """Quantile: the training block's constant quantile per alpha (the pinball baseline)."""
    validation: JsonObject = field(default_factory=dict)
    """Figures on the validation block (what selections made on validation look at)."""
    params: list[JsonObject] = field(default_factory=list)
    """The LightGBM parameters of each booster."""


class ModelKind(Protocol):
    """One kind of model: objective, fit, calibration, metrics, ONNX contract, gates."""

    @property
    def name(self) -> MemberKind:
        """The card's ``kind`` of a member of this kind."""
        ...

    @property
    def output(self) -> Literal["probabilities", "quantiles"]:
        """The ONNX output's name (the member's ``output``)."""
        ...

    def fit(
        self,
        train: Block,
        valid: Block,
        params: TrainingParams,
        *,
        feature_names: Sequence[str],
        init_models: Sequence[lgb.Booster] | None = None,
        fitter: Fitter | None = None,
    ) -> FittedModel:
        """Boost on ``train`` (early stopping and calibration on ``valid``); ``fitter`` says
        where (in process when None, a Dask cluster's: ``hindsight.trainer.dask_fitting``)."""
        ...

    def predict(self, model: FittedModel, x: FloatArray) -> FloatArray:
        """What the ONNX graph answers, computed in numpy (binary [n], quantile [n, k])."""
        ...

    def evaluate(self, model: FittedModel, test: Block, params: TrainingParams) -> JsonObject:
        """Every metric on the untouched test block."""
        ...

    def export(self, model: FittedModel) -> bytes:
        """The serialized ONNX graph (input ``input``, output :attr:`output`)."""
        ...

    def check_parity(
        self, onnx_bytes: bytes, model: FittedModel, x: FloatArray, *, tolerance: float
    ) -> JsonObject:
        """ONNX vs :meth:`predict` on ``x``; raises ``ParityError`` beyond ``tolerance``."""
        ...

    def gate_figures(self, metrics: JsonObject) -> JsonObject:
        """The member's headline: the figures a registry gates on."""
        ...


def base_params(params: TrainingParams) -> dict[str, Any]:
    """The run's shared LightGBM parameters (seeded, deterministic), objective left to kinds."""
    out = dict(lgb_params(params, 1.0))
    for key in ("objective", "metric", "scale_pos_weight"):
        out.pop(key, None)
    return out


def boost(
    lgb_params_: dict[str, Any],
    train: Block,
    valid: Block,
    params: TrainingParams,
    *,
    feature_names: Sequence[str],
    init_model: lgb.Booster | None = None,
    fitter: Fitter | None = None,
) -> lgb.Booster:
    """Boost with early stopping on ``valid``; the result is frozen at the best iteration.

    With ``init_model`` the new trees continue that booster (LightGBM ``init_model``): the
    returned booster holds the old trees plus the new ones (always fitted in process).
    Early stopping watches the first metric only (binary: log-loss, not the AUC): on a
    small validation block the AUC plateaus within a few trees and would stop an expert
    almost at once.
    """
    booster = (fitter or LocalFitter()).fit(
        FitRequest(
            params=lgb_params_,
            x=train.x,
            y=train.y,
            x_valid=valid.x,
            y_valid=valid.y,
            feature_names=list(feature_names),
            num_boost_round=params.num_boost_round,
            early_stopping_rounds=params.early_stopping_rounds,
            init_model=init_model,
            first_metric_only=True,
        )
    )
    # best_iteration counts the init model's trees too: the frozen model keeps them.
    best = booster.best_iteration or booster.current_iteration()
    return lgb.Booster(model_str=float32_thresholds(booster.model_to_string(num_iteration=best)))


def _floor32(value: str) -> str:
    t = float(value)
    f = np.float32(t)
    if np.isfinite(f) and float(f) > t:
        f = np.nextafter(f, np.float32(-np.inf))
    return repr(float(f))


def float32_thresholds(model_str: str) -> str:
    """The model with every numerical split threshold ``t`` replaced by the largest float32
    that is ``<= t``: for a float32 input (all the trainer and ONNX ever see) ``x <= t`` is
    then the same comparison in double (LightGBM) and in float32 (the ONNX converters round
    thresholds to the NEAREST float32, which sends a row whose value lies between ``t`` and
    that rounding the other way: seen on the dev stack's replay, a quantile member 0.014 off).
    """
    # tree_sizes= (byte lengths of the tree blocks, a loading shortcut) no longer holds once
    # a threshold is rewritten: without it LightGBM parses the trees one after another.
    lines = [line for line in model_str.split("\n") if not line.startswith("tree_sizes=")]
    for i, line in enumerate(lines):
        if not line.startswith("decision_type="):
            continue
        kinds = line.removeprefix("decision_type=").split()
        for j in (i - 1, i + 1, i - 2, i + 2):  # the tree's threshold= line, next to it
            if 0 <= j < len(lines) and lines[j].startswith("threshold="):
                values = lines[j].removeprefix("threshold=").split()
                if len(values) == len(kinds):
                    lines[j] = "threshold=" + " ".join(
                        v if int(k) & 1 else _floor32(v)  # bit 0: categorical, not a number
                        for v, k in zip(values, kinds, strict=True)
                    )
                break
    return "\n".join(lines)
