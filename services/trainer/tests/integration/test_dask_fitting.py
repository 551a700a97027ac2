"""Dask training (issue 16, beyond one machine): a LocalCluster of two worker processes
fits the same boosters as one process, within the issue's tolerances on a time-later
test block: ROC-AUC within 0.005, quantile coverage within 1 point."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from hindsight.trainer.dask_fitting import DaskFitter
from hindsight.trainer.domain.family import FamilyConfig, train_family
from hindsight.trainer.domain.fitting import FitRequest, LocalFitter, best_iteration
from hindsight.trainer.domain.metrics import roc_auc
from hindsight.trainer.domain.synthetic import make_family_frame
from hindsight.trainer.domain.training import TrainingParams

pytestmark = pytest.mark.integration

N = 12_000
NAMES = ["f0", "f1", "f2", "f3"]
BASE: dict[str, object] = {
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_data_in_leaf": 40,
    "lambda_l2": 1.0,
    "seed": 7,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbosity": -1,
}


@pytest.fixture(scope="module")
def dask_fitter() -> Iterator[DaskFitter]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield DaskFitter(client)


def _data(seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, len(NAMES)))
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] * (x[:, 2] > 0)
    y_bin = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    y_reg = np.exp(0.3 * x[:, 0] + 0.5 * rng.normal(size=N))  # lognormal, location moves
    return x, y_bin, y_reg


def _blocks(n: int) -> tuple[slice, slice, slice]:
    """Time-ordered train / validation / test (rows are in time order)."""
    return slice(0, int(n * 0.6)), slice(int(n * 0.6), int(n * 0.8)), slice(int(n * 0.8), n)


def _request(params: dict[str, object], x: Any, y: Any) -> FitRequest:
    train, valid, _ = _blocks(len(x))
    return FitRequest(
        params=BASE | params,
        x=x[train],
        y=y[train],
        x_valid=x[valid],
        y_valid=y[valid],
        feature_names=NAMES,
        num_boost_round=120,
        early_stopping_rounds=15,
    )


def test_binary_on_two_workers_matches_one_process(dask_fitter: DaskFitter) -> None:
    x, y, _ = _data(1)
    request = _request({"objective": "binary", "metric": ["binary_logloss"]}, x, y)
    _, _, test = _blocks(len(x))
    local = LocalFitter().fit(request)
    dask = dask_fitter.fit(request)
    auc_local = roc_auc(y[test], local.predict(x[test]))
    auc_dask = roc_auc(y[test], dask.predict(x[test]))
    print(f"test ROC-AUC: one process {auc_local:.4f}, 2 Dask workers {auc_dask:.4f}")
    assert auc_local > 0.7  # the data has signal: the comparison means something
    assert abs(auc_local - auc_dask) <= 0.005


def test_quantile_on_two_workers_covers_like_one_process(dask_fitter: DaskFitter) -> None:
    x, _, y = _data(2)
    alpha = 0.7
    request = _request({"objective": "quantile", "alpha": alpha, "metric": ["quantile"]}, x, y)
    _, _, test = _blocks(len(x))
    coverage = {
        name: float(np.mean(y[test] <= fitter.fit(request).predict(x[test])))
        for name, fitter in (("local", LocalFitter()), ("dask", dask_fitter))
    }
    print(f"coverage of the 0.7 quantile on the test block: {coverage}")
    assert abs(coverage["local"] - alpha) <= 0.03
    assert abs(coverage["local"] - coverage["dask"]) <= 0.01


def test_best_iteration_follows_the_metric_direction() -> None:
    assert best_iteration({"binary_logloss": [0.7, 0.5, 0.55]}) == 2
    assert best_iteration({"auc": [0.6, 0.7, 0.65]}) == 2
    with pytest.raises(ValueError, match="no validation metric"):
        best_iteration({})


def test_whole_family_on_two_workers_matches_one_process(dask_fitter: DaskFitter) -> None:
    """The family's members fitted on the cluster (the same frame, split and gates): the
    entry head's test ROC-AUC within 0.005, each quantile head's coverage within 1 point."""
    params = TrainingParams(
        num_threads=1,
        num_boost_round=80,
        early_stopping_rounds=15,
        learning_rate=0.1,
        num_leaves=8,
        bootstrap_resamples=0,
    )
    frame = make_family_frame(8_000, clusters_differ=False, seed=5)
    local = train_family(frame, FamilyConfig(params=params)).card.metrics["headline"]
    dask = train_family(frame, FamilyConfig(params=params, fitter=dask_fitter)).card.metrics[
        "headline"
    ]
    print(
        "family headline, one process vs 2 Dask workers: "
        + ", ".join(
            f"{key} {local[key]:.4f}/{dask[key]:.4f}"
            for key in ("roc_auc", "risk_coverage", "rr_coverage", "offset_coverage")
        )
    )
    assert local["roc_auc"] > 0.6
    assert abs(local["roc_auc"] - dask["roc_auc"]) <= 0.005
    for head in ("risk", "rr", "offset"):
        assert abs(local[f"{head}_coverage"] - dask[f"{head}_coverage"]) <= 0.01, head
