"""The quantile kind: one LightGBM ``objective="quantile"`` booster per alpha, one graph.

Served output ``quantiles`` [None, k] float32, ascending alpha, non-crossing, clipped to the
``value_range`` of the training targets (see :mod:`.quantile_onnx`). Metrics on the test
block, per alpha: pinball loss, coverage ``Pr[y <= q]`` with ``coverage_below`` ``Pr[y < q]``
and ``coverage_error`` (how far alpha lies outside ``[Pr[y < q], Pr[y <= q]]``: a target with
an atom, such as the offset head's many exact zeros, has a correct quantile AT the atom,
where ``Pr[y <= q]`` jumps past alpha; for a continuous target it is ``|Pr[y <= q] - alpha|``)
and ``baseline_pinball``, the pinball
loss of the constant training-block quantile (what a model without features would answer;
the registry's pinball gate compares against it); for the served alpha: SMAPE.
Head-specific extras, switched on by the head's kind: ``fixed_target_r`` (the RR head) adds
the utility of the predicted target against a fixed one, ``entry_style`` (the offset head)
adds the share of rows whose predicted entry style (sign) is the realised best one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import lightgbm as lgb
import numpy as np

from hindsight.common.family import MemberKind
from hindsight.trainer.domain.fitting import Fitter
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.kinds.base import Block, FittedModel, FloatArray, base_params, boost
from hindsight.trainer.domain.kinds.quantile_onnx import (
    check_quantile_parity,
    export_quantiles,
    non_crossing,
)
from hindsight.trainer.domain.training import TrainingParams

__all__ = [
    "QuantileKind",
    "coverage",
    "coverage_error",
    "pinball_loss",
    "smape",
    "target_utility",
]


def pinball_loss(y: FloatArray, q: FloatArray, alpha: float) -> float:
    """Mean quantile (pinball) loss of predictions ``q`` of the ``alpha`` quantile."""
    diff = np.asarray(y, dtype=np.float64) - np.asarray(q, dtype=np.float64)
    return float(np.mean(np.maximum(alpha * diff, (alpha - 1.0) * diff)))


def coverage(y: FloatArray, q: FloatArray) -> float:
    """``Pr[y <= q]``: should be close to the quantile's alpha."""
    return float(np.mean(np.asarray(y) <= np.asarray(q))) if len(y) else float("nan")


def coverage_error(y: FloatArray, q: FloatArray, alpha: float) -> float:
    """How far ``alpha`` lies outside ``[Pr[y < q], Pr[y <= q]]`` (0 inside): a quantile is
    right when at most alpha of the rows lie below it and at least alpha at or below it."""
    if not len(y):
        return float("nan")
    below = float(np.mean(np.asarray(y) < np.asarray(q)))
    at_or_below = float(np.mean(np.asarray(y) <= np.asarray(q)))
    return max(0.0, below - alpha, alpha - at_or_below)


def smape(y: FloatArray, q: FloatArray) -> float:
    """Symmetric MAPE in [0, 2]: mean ``2|y - q| / (|y| + |q|)``, 0 where both are 0."""
    num = 2.0 * np.abs(np.asarray(y) - np.asarray(q))
    den = np.abs(np.asarray(y)) + np.abs(np.asarray(q))
    ratio = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return float(np.mean(ratio)) if len(ratio) else float("nan")


def target_utility(runup_r: FloatArray, target_r: FloatArray) -> float:
    """Mean R captured by a take-profit at ``target_r``: the target when the run-up reached
    it, else 0 (a lower bound: what a missed target's trade returns is not known here)."""
    hit = np.asarray(runup_r) >= np.asarray(target_r)
    return float(np.mean(np.where(hit, target_r, 0.0))) if len(hit) else float("nan")


@dataclass(frozen=True, slots=True)
class QuantileKind:
    """Quantile regressor of ``alphas`` (ascending) serving ``served_alpha``."""

    alphas: tuple[float, ...]
    served_alpha: float
    fixed_target_r: float | None = None
    """RR head: compare the served target's utility with this fixed target (2 R)."""
    entry_style: bool = False
    """Offset head: report the share of rows whose predicted sign gives the right style."""
    name: MemberKind = "quantile"
    output: Literal["probabilities", "quantiles"] = "quantiles"

    def __post_init__(self) -> None:
        if not self.alphas or list(self.alphas) != sorted(set(self.alphas)):
            raise ValueError(f"alphas must be non-empty, distinct and ascending: {self.alphas}")
        if any(not 0.0 < a < 1.0 for a in self.alphas):
            raise ValueError(f"alphas must lie in (0, 1): {self.alphas}")
        if self.served_alpha not in self.alphas:
            raise ValueError(f"served_alpha {self.served_alpha} is not one of {self.alphas}")

    def lgb_params(self, params: TrainingParams, alpha: float) -> dict[str, object]:
        """LightGBM parameters of the ``alpha`` booster."""
        return {
            **base_params(params),
            "objective": "quantile",
            "alpha": alpha,
            "metric": "quantile",
        }

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
        if len(train) == 0 or len(valid) == 0:
            raise ValueError("the train and validation blocks must not be empty")
        if init_models is not None and len(init_models) != len(self.alphas):
            raise ValueError(f"{len(init_models)} init boosters for {len(self.alphas)} alphas")
        boosters, used = [], []
        for i, alpha in enumerate(self.alphas):
            lgb_p = self.lgb_params(params, alpha)
            init = init_models[i] if init_models is not None else None
            boosters.append(
                boost(
                    lgb_p,
                    train,
                    valid,
                    params,
                    feature_names=feature_names,
                    init_model=init,
                    fitter=fitter,
                )
            )
            used.append(lgb_p)
        both = np.concatenate([train.y, valid.y])
        model = FittedModel(
            kind=self.name,
            boosters=boosters,
            feature_names=list(feature_names),
            alphas=list(self.alphas),
            served_alpha=self.served_alpha,
            value_range=(float(np.min(both)), float(np.max(both))),
            baseline=[float(np.quantile(train.y, alpha)) for alpha in self.alphas],
            params=used,
        )
        model.validation = self._scores(self.predict(model, valid.x), valid.y, model.baseline)
        return model

    def predict(self, model: FittedModel, x: FloatArray) -> FloatArray:
        """Quantiles [n, k]: ascending alpha, non-crossing, clipped to the value range."""
        if model.value_range is None:
            raise ValueError("a quantile model needs its value_range")
        raw = np.column_stack([np.asarray(b.predict(x), dtype=np.float64) for b in model.boosters])
        return non_crossing(raw, model.value_range)

    def _scores(self, q: FloatArray, y: FloatArray, baseline: Sequence[float]) -> JsonObject:
        if len(baseline) != len(self.alphas):
            raise ValueError(
                f"baseline: {len(baseline)} training quantiles for {len(self.alphas)} alphas"
            )
        per_alpha = {
            f"{alpha:g}": {
                "pinball": pinball_loss(y, q[:, j], alpha),
                "coverage": coverage(y, q[:, j]),
                "coverage_below": float(np.mean(y < q[:, j])) if len(y) else float("nan"),
                "coverage_error": coverage_error(y, q[:, j], alpha),
                "baseline_quantile": baseline[j],
                "baseline_pinball": pinball_loss(y, np.full(len(y), baseline[j]), alpha),
            }
            for j, alpha in enumerate(self.alphas)
        }
        served = q[:, self.alphas.index(self.served_alpha)]
        out: JsonObject = {
            "n": len(y),
            "per_alpha": per_alpha,
            "served_alpha": self.served_alpha,
            "served_coverage": coverage(y, served),
            "served_coverage_error": coverage_error(y, served, self.served_alpha),
            "served_pinball": pinball_loss(y, served, self.served_alpha),
            "smape": smape(y, served),
            "mean_pinball": float(np.mean([v["pinball"] for v in per_alpha.values()])),
            "max_coverage_error": float(max(v["coverage_error"] for v in per_alpha.values()))
            if len(y)
            else None,
        }
        if self.fixed_target_r is not None:
            fixed = np.full(len(y), self.fixed_target_r)
            model_u, fixed_u = target_utility(y, served), target_utility(y, fixed)
            out["utility"] = {
                "definition": "mean R of a take-profit at the target: target if run-up >= "
                "target, else 0",
                "model_r": model_u,
                "fixed_r": fixed_u,
                "fixed_target_r": self.fixed_target_r,
                "gain_r": model_u - fixed_u,
            }
        if self.entry_style:
            out["entry_style_accuracy"] = (
                float(np.mean((served < 0) == (y < 0))) if len(y) else None
            )
        return out

    def evaluate(self, model: FittedModel, test: Block, params: TrainingParams) -> JsonObject:
        return self._scores(self.predict(model, test.x), test.y, model.baseline)

    def export(self, model: FittedModel) -> bytes:
        if model.value_range is None:
            raise ValueError("a quantile model needs its value_range")
        return export_quantiles(model.boosters, len(model.feature_names), model.value_range)

    def check_parity(
        self, onnx_bytes: bytes, model: FittedModel, x: FloatArray, *, tolerance: float
    ) -> JsonObject:
        return check_quantile_parity(onnx_bytes, x, self.predict(model, x), tolerance=tolerance)

    def gate_figures(self, metrics: JsonObject) -> JsonObject:
        out: JsonObject = {
            "served_alpha": metrics["served_alpha"],
            "coverage": metrics["served_coverage"],
            "coverage_error": metrics["served_coverage_error"]
            if metrics["served_coverage"] is not None
            else None,
            "max_coverage_error": metrics["max_coverage_error"],
            "pinball": metrics["served_pinball"],
            "baseline_pinball": metrics["per_alpha"][f"{metrics['served_alpha']:g}"][
                "baseline_pinball"
            ],
            "smape": metrics["smape"],
            "test_rows": metrics["n"],
        }
        if "utility" in metrics:
            out["utility_gain_r"] = metrics["utility"]["gain_r"]
        if "entry_style_accuracy" in metrics:
            out["entry_style_accuracy"] = metrics["entry_style_accuracy"]
        return out
