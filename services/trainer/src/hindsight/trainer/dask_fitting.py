"""Fitting boosters on a Dask cluster through ``lightgbm.dask``.

``HINDSIGHT_TRAINER_DASK_SCHEDULER`` (``tcp://dask-scheduler:8786``) picks it; see
:mod:`hindsight.trainer.domain.fitting` for what stays the same and what differs.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from hindsight.trainer.domain.fitting import FitRequest, Fitter, LocalFitter, best_iteration

__all__ = ["DaskFitter", "fitter_for"]

logger = logging.getLogger(__name__)


class DaskFitter:
    """``lightgbm.dask`` on the cluster behind ``client``; the rows are split into one
    partition per worker."""

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def connect(cls, address: str, *, timeout_s: float = 10.0) -> DaskFitter:
        """A fitter on the scheduler at ``address`` (fails fast when it does not answer)."""
        from distributed import Client

        return cls(Client(address, timeout=f"{timeout_s}s", set_as_default=False))

    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def close(self) -> None:
        self.client.close()

    def _array(self, values: npt.NDArray[Any], parts: int) -> Any:
        import dask.array as da

        rows = max(1, math.ceil(len(values) / parts))
        chunks = (rows,) + tuple(values.shape[1:])
        return da.from_array(np.ascontiguousarray(values), chunks=chunks)

    def fit(self, request: FitRequest) -> lgb.Booster:
        if request.init_model is not None:
            logger.info("continuing a booster: fitted in process (lightgbm.dask cannot)")
            return LocalFitter().fit(request)
        from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

        params: dict[str, Any] = dict(request.params)
        objective = str(params.get("objective", "regression"))
        estimator_type = DaskLGBMClassifier if objective == "binary" else DaskLGBMRegressor
        # The tree budget is n_estimators; each worker's threads are Dask's (nthreads).
        for key in ("num_iterations", "early_stopping_round", "num_threads", "n_jobs"):
            params.pop(key, None)
        estimator = estimator_type(
            client=self.client, n_estimators=request.num_boost_round, **params
        )
        parts = self.workers()
        estimator.fit(
            self._array(request.x, parts),
            self._array(np.asarray(request.y), parts),
            sample_weight=(
                None if request.weight is None else self._array(np.asarray(request.weight), parts)
            ),
            eval_X=(self._array(request.x_valid, parts),),
            eval_y=(self._array(np.asarray(request.y_valid), parts),),
            eval_names=["validation"],
            feature_name=list(request.feature_names),
        )
        booster: lgb.Booster = estimator.booster_
        history = estimator.evals_result_.get("validation", {})
        best = best_iteration(history)
        # Keep the trees up to the best validation iteration (what early stopping keeps).
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def fitter_for(scheduler: str | None) -> Fitter:
    """The fitter a run uses: Dask when a scheduler address is configured."""
    if scheduler:
        return DaskFitter.connect(scheduler)
    return LocalFitter()
