"""Where a run's LightGBM boosters are fitted: the request, the in-process fitter.

The Dask fitter is in ``hindsight.trainer.dask_fitting`` (it talks to a cluster).

``HINDSIGHT_TRAINER_DASK_SCHEDULER`` (a scheduler address such as
``tcp://dask-scheduler:8786``) sends every full retrain to that cluster through
``lightgbm.dask``; unset, boosters are fitted in this process with ``lightgbm.train``.
Both get the same rows (the run's train block), the same parameters and the same
validation block, and hand back a plain ``lightgbm.Booster``, so calibration, metrics on
the time-later test block, ONNX export and parity are the same code either way.

Differences, on purpose:
- ``lightgbm.dask`` has no early stopping: the Dask fitter grows ``num_boost_round``
  trees, records the validation metric after each, and keeps the trees up to the best
  one (the iteration early stopping would have kept, or a later one if the metric
  improved again after ``early_stopping_rounds`` without gain).
- Incremental runs (``init_model``: continue the production booster on the newest
  window) always fit in process: ``lightgbm.dask`` cannot continue a booster. They are
  small by construction (the newest window only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

__all__ = ["FitRequest", "Fitter", "LocalFitter", "best_iteration"]

FloatArray = npt.NDArray[np.float64]

_HIGHER_IS_BETTER = {"auc", "average_precision", "map", "ndcg"}


@dataclass(frozen=True)
class FitRequest:
    """One booster to fit: LightGBM parameters (canonical names), the train and validation
    blocks, and the tree budget."""

    params: Mapping[str, object]
    x: npt.NDArray[Any]
    y: npt.NDArray[Any]
    x_valid: npt.NDArray[Any]
    y_valid: npt.NDArray[Any]
    feature_names: Sequence[str]
    num_boost_round: int
    early_stopping_rounds: int
    weight: npt.NDArray[Any] | None = None
    init_model: lgb.Booster | None = None
    first_metric_only: bool = False
    """Early stopping watches only the first metric (in process; Dask keeps the best
    iteration of the first metric either way)."""


class Fitter(Protocol):
    """Fits one booster; ``name`` says where (``local`` or ``dask``) for the run report."""

    name: str

    def fit(self, request: FitRequest) -> lgb.Booster: ...


class LocalFitter:
    """``lightgbm.train`` in this process, with early stopping on the validation block."""

    name = "local"

    def fit(self, request: FitRequest) -> lgb.Booster:
        train_set = lgb.Dataset(
            request.x,
            request.y,
            weight=request.weight,
            feature_name=list(request.feature_names),
            free_raw_data=True,
        )
        valid_set = lgb.Dataset(request.x_valid, request.y_valid, reference=train_set)
        return lgb.train(
            dict(request.params),
            train_set,
            num_boost_round=request.num_boost_round,
            valid_sets=[valid_set],
            valid_names=["validation"],
            init_model=request.init_model,
            callbacks=[
                lgb.early_stopping(
                    request.early_stopping_rounds,
                    first_metric_only=request.first_metric_only,
                    verbose=False,
                )
            ],
        )


def best_iteration(history: Mapping[str, Sequence[float]]) -> int:
    """1-based iteration with the best value of the first recorded validation metric."""
    if not history:
        raise ValueError("no validation metric was recorded")
    metric, values = next(iter(history.items()))
    if not values:
        raise ValueError(f"validation metric {metric!r} has no values")
    scores = np.asarray(values, dtype=np.float64)
    index = int(np.argmax(scores) if metric in _HIGHER_IS_BETTER else np.argmin(scores))
    return index + 1
