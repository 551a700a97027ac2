"""Family training on 1M rows next to the sum of bare ``lightgbm.train`` calls, and on a
Dask ``LocalCluster`` of 2 workers next to one process (issue 16).

The family run (``train_family``) fits every member (3 Entry-Experts, the pooled entry
model, 3 + 3 + 3 quantile boosters), calibrates, evaluates each on the untouched test
block, chooses expert vs pooled, exports ONNX and checks parity. The baseline is what the
boosting alone costs: for each member booster the run produced, one bare ``lightgbm.train``
on the same train rows and features with the same parameters and the same number of trees
(no validation, no early stopping). Aim: family ≤ 1.3 × the baseline. The Dask figure is
printed only (one box: the workers share its cores). Prints figures and ratios; asserts no
timing. ``HINDSIGHT_BENCH_FAMILY_ROWS`` changes the row count (default 1,000,000).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from hindsight.common.family import CLUSTER_CODES, CLUSTER_FEATURE, HEAD_TARGETS, FamilyCard
from hindsight.trainer.domain.family import FamilyConfig, train_family, write_release
from hindsight.trainer.domain.family_frame import FamilyFrame
from hindsight.trainer.domain.splits import split_blocks
from hindsight.trainer.domain.synthetic import make_family_frame
from hindsight.trainer.domain.training import TrainingParams

pytestmark = pytest.mark.bench

N_ROWS = int(os.environ.get("HINDSIGHT_BENCH_FAMILY_ROWS", "1000000"))
N_FEATURES = 12
PARAMS = TrainingParams(
    num_threads=int(os.environ.get("HINDSIGHT_BENCH_THREADS", "2")),
    num_boost_round=200,
    early_stopping_rounds=20,
    learning_rate=0.1,
    num_leaves=31,
    bootstrap_resamples=0,
)


def _column(frame: dict[str, Any], name: str, rows: np.ndarray[Any, Any]) -> Any:
    if name == CLUSTER_FEATURE:
        codes = np.array([CLUSTER_CODES.get(c, np.nan) for c in frame["liquidity_cluster"]])
        return codes[rows]
    return np.asarray(frame[name], dtype=np.float64)[rows]


def _bare_fits(frame: dict[str, Any], card: FamilyCard, release: Path) -> tuple[float, int]:
    """Seconds of one bare lightgbm.train per member booster (same rows, params, trees)."""
    ordered = FamilyFrame.from_columns(frame)
    blocks = split_blocks(ordered.ts, ordered.closed, PARAMS.split)
    order = np.argsort(np.asarray(frame["ts"]).astype("datetime64[us]").astype(np.int64))
    train_rows = order[blocks.train]
    clusters = np.asarray(frame["liquidity_cluster"], dtype=object)
    total, boosters = 0.0, 0
    for member in card.members:
        rows = train_rows
        if member.cluster is not None:
            rows = rows[clusters[rows] == member.cluster]
        y = np.asarray(frame[HEAD_TARGETS[member.head]], dtype=np.float64)[rows]
        x = np.column_stack([_column(frame, f, rows) for f in member.features])
        files = (member.model_extra or {}).get("booster_files") or [member.booster_file]
        for file in files:
            fitted = lgb.Booster(model_file=str(release / file))
            params = {k: v for k, v in fitted.params.items() if k not in ("num_iterations",)}
            params["num_threads"] = PARAMS.num_threads
            trees = fitted.num_trees()
            started = time.perf_counter()
            lgb.train(params, lgb.Dataset(x, y), num_boost_round=max(1, trees))
            total += time.perf_counter() - started
            boosters += 1
    return total, boosters


def test_family_training_against_bare_lightgbm_and_dask() -> None:
    started = time.perf_counter()
    frame = make_family_frame(N_ROWS, clusters_differ=True, seed=11, n_features=N_FEATURES)
    print(
        f"\n{N_ROWS:,} rows × {N_FEATURES} features generated in "
        f"{time.perf_counter() - started:.1f} s"
    )

    started = time.perf_counter()
    release = train_family(frame, FamilyConfig(params=PARAMS))
    family_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as root:
        uri, _, card = write_release(Path(root), release)
        bare_s, boosters = _bare_fits(frame, card, Path(root) / uri)
    headline = card.metrics["headline"]
    print(
        f"family run (train_family, {len(card.members)} members, {boosters} boosters): "
        f"{family_s:.1f} s; stages {release.timings_s}"
    )
    print(f"bare lightgbm.train, the same {boosters} boosters: {bare_s:.1f} s")
    print(f"ratio family / bare: {family_s / bare_s:.2f}x (aim <= 1.3x)")
    print(f"entry test ROC-AUC {headline['roc_auc']:.4f}; routing {card.entry_routing}")

    from distributed import Client, LocalCluster

    from hindsight.trainer.dask_fitting import DaskFitter

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        started = time.perf_counter()
        dask_release = train_family(frame, FamilyConfig(params=PARAMS, fitter=DaskFitter(client)))
        dask_s = time.perf_counter() - started
    dask_headline = dask_release.card.metrics["headline"]
    print(
        f"family run on a Dask LocalCluster of 2 workers: {dask_s:.1f} s "
        f"({dask_s / family_s:.2f}x one process; one box, the workers share its cores); "
        f"entry ROC-AUC {dask_headline['roc_auc']:.4f} vs {headline['roc_auc']:.4f}"
    )
    assert bare_s > 0 and family_s > 0
