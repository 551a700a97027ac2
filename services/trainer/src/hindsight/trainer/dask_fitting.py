"""Fitting boosters on a Dask cluster through ``lightgbm.dask``.

``HINDSIGHT_TRAINER_DASK_SCHEDULER`` (``tcp://dask-scheduler:8786``) picks it; see
:mod:`hindsight.trainer.domain.fitting` for what stays the same and what differs.
"""

from __future__ import annotations

import logging
import math
import threading
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

    def __init__(
        self, client: Any = None, *, address: str | None = None, timeout_s: float = 10.0
    ) -> None:
        if client is None and not address:
            raise ValueError("a DaskFitter needs a client or a scheduler address")
        self.client = client
        self.address = address
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, address: str, *, timeout_s: float = 10.0) -> DaskFitter:
        """A fitter on the scheduler at ``address``, connected now (fails fast)."""
        fitter = cls(address=address, timeout_s=timeout_s)
        fitter.connected()
        return fitter

    def connected(self) -> Any:
        """The client, connecting on first use (runs call it from their worker thread);
        a scheduler that does not answer within ``timeout_s`` fails the run, named."""
        with self._lock:
            if self.client is None:
                from distributed import Client

                try:
                    self.client = Client(
                        self.address, timeout=f"{self.timeout_s}s", set_as_default=False
                    )
                except Exception as exc:  # OSError, TimeoutError: the run says which
                    raise RuntimeError(
                        f"Dask scheduler {self.address} did not answer: {exc}"
                    ) from exc
            return self.client

    def workers(self) -> int:
        return max(1, len(self.connected().scheduler_info().get("workers", {})))

    def close(self) -> None:
        if self.client is not None:
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
            client=self.connected(), n_estimators=request.num_boost_round, **params
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
    """The fitter runs use: Dask when a scheduler address is configured (connected on the
    first run, so the trainer starts while the cluster is still coming up)."""
    if scheduler:
        return DaskFitter(address=scheduler)
    return LocalFitter()
