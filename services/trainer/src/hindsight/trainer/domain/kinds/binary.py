"""The binary kind: a calibrated LightGBM classifier (what ``trade_success`` has always been).

It reuses the single-model path: :func:`~hindsight.trainer.domain.training.lgb_params`,
:func:`~hindsight.trainer.domain.calibration.choose_calibrator` (sigmoid below
``ISOTONIC_MIN_ROWS`` calibration rows, output clipped to ``[P_MIN, 1 - P_MIN]``),
:func:`~hindsight.trainer.domain.onnx_export.export_onnx` (output ``probabilities``
``[None, 2]``) and its parity check. Beyond the single model's metrics it reports
Precision@k per symbol and day and the expected R of the trades taken at the threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from hindsight.common.family import MemberKind
from hindsight.trainer.domain.calibration import choose_calibrator
from hindsight.trainer.domain.fitting import Fitter
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.kinds.base import Block, FittedModel, FloatArray, boost
from hindsight.trainer.domain.metrics import classification_metrics, roc_auc
from hindsight.trainer.domain.onnx_export import check_parity, export_onnx
from hindsight.trainer.domain.training import TrainingParams, lgb_params

__all__ = ["BinaryKind", "expected_r", "precision_at_k"]


def precision_at_k(
    y: npt.NDArray[np.float64], p: FloatArray, group: npt.NDArray[np.object_], k: int
) -> JsonObject:
    """Share of favourable rows among each group's ``k`` highest ``p`` (groups: symbol/day)."""
    keys = np.asarray(group, dtype=object).astype(str)
    _, inverse = np.unique(keys, return_inverse=True)
    # Rows by group, then by p descending (stable: ties keep their time order).
    order = np.lexsort((-np.asarray(p, dtype=np.float64), inverse))
    grouped = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grouped)) + 1] if len(order) else np.array([0])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    top = order[rank < k]
    hits, taken = int(np.sum(y[top] == 1)), len(top)
    return {
        "k": k,
        "groups": int(len(np.unique(inverse))),
        "rows": taken,
        "precision": hits / taken if taken else None,
    }


def expected_r(p: FloatArray, r: FloatArray, threshold: float) -> JsonObject:
    """Mean realised R of the rows a model would take (``p >= threshold``)."""
    taken = np.asarray(r, dtype=np.float64)[p >= threshold]
    return {
        "threshold": threshold,
        "trades": len(taken),
        "expected_r": float(np.mean(taken)) if len(taken) else None,
        "total_r": float(np.sum(taken)),
    }


def _pos_weight(y: FloatArray) -> float:
    pos = int(np.sum(y == 1))
    return (len(y) - pos) / pos if pos else 1.0


@dataclass(frozen=True, slots=True)
class BinaryKind:
    """Calibrated classifier of a 0/1 target; ``threshold`` and ``k`` shape its metrics."""

    threshold: float = 0.55
    k: int = 1
    name: MemberKind = "binary"
    output: Literal["probabilities", "quantiles"] = "probabilities"

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
        for block_name, block in (("train", train), ("validation", valid)):
            if len(np.unique(block.y)) < 2:
                raise ValueError(f"the {block_name} block is empty or holds a single class")
        lgb_p = lgb_params(params, _pos_weight(train.y))
        init = init_models[0] if init_models else None
        booster = boost(
            lgb_p,
            train,
            valid,
            params,
            feature_names=feature_names,
            init_model=init,
            fitter=fitter,
        )
        raw_va = np.asarray(booster.predict(valid.x), dtype=np.float64)
        y_va = valid.y.astype(np.int64)
        calibrator = choose_calibrator(raw_va, y_va)
        p_va = calibrator(raw_va)
        return FittedModel(
            kind=self.name,
            boosters=[booster],
            feature_names=list(feature_names),
            calibrator=calibrator,
            validation={"roc_auc": roc_auc(y_va, p_va), "n": len(valid)},
            params=[dict(lgb_p)],
        )

    def predict(self, model: FittedModel, x: FloatArray) -> FloatArray:
        """Calibrated P(favourable), shape [n]."""
        if model.calibrator is None:
            raise ValueError("a binary model needs its calibrator")
        raw = np.asarray(model.boosters[0].predict(x), dtype=np.float64)
        return model.calibrator(raw)

    def evaluate(self, model: FittedModel, test: Block, params: TrainingParams) -> JsonObject:
        p = self.predict(model, test.x)
        y = test.y.astype(np.int64)
        out: JsonObject = classification_metrics(
            y,
            p,
            threshold=self.threshold,
            bootstrap_resamples=params.bootstrap_resamples,
            seed=params.seed,
        )
        if test.group is not None:
            out["precision_at_k"] = precision_at_k(test.y, p, test.group, self.k)
        if test.r is not None:
            out["expected_r"] = expected_r(p, test.r, self.threshold)
        return out

    def export(self, model: FittedModel) -> bytes:
        if model.calibrator is None:
            raise ValueError("a binary model needs its calibrator")
        return export_onnx(model.boosters[0], len(model.feature_names), model.calibrator)

    def check_parity(
        self, onnx_bytes: bytes, model: FittedModel, x: FloatArray, *, tolerance: float
    ) -> JsonObject:
        return check_parity(onnx_bytes, x, self.predict(model, x), tolerance=tolerance)

    def gate_figures(self, metrics: JsonObject) -> JsonObject:
        at_k = metrics.get("precision_at_k") or {}
        exp = metrics.get("expected_r") or {}
        return {
            "roc_auc": metrics["roc_auc"],
            "pr_auc": metrics["pr_auc"],
            "brier": metrics["brier"],
            "ece": metrics["ece"],
            "log_loss": metrics["log_loss"],
            "precision_at_k": at_k.get("precision"),
            "expected_r": exp.get("expected_r"),
            "test_rows": metrics["n"],
        }
