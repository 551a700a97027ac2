"""Trainer wall time on 1M synthetic rows × 68 features next to a bare ``lightgbm.train``.

Both fit the same train block with the same parameters and the same early stopping on
the same validation block; the trainer also runs the 5 expanding CV folds, calibration,
the test-block metrics (bootstrap included), the ONNX export and the parity check.
Prints figures and ratios; asserts no timing. ``HINDSIGHT_BENCH_TRAINER_ROWS`` changes
the row count (default 1,000,000). Run with ``make bench`` (takes several minutes).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import lightgbm as lgb
import numpy as np
import pytest

from hindsight.devstack.synthetic import true_probability
from hindsight.trainer.domain.splits import split_blocks
from hindsight.trainer.domain.training import Dataset, TrainingParams, lgb_params, train_dataset

pytestmark = pytest.mark.bench

N_ROWS = int(os.environ.get("HINDSIGHT_BENCH_TRAINER_ROWS", "1000000"))
N_FEATURES = 68
HOUR_US = 3_600_000_000


def synthetic_dataset(n: int, seed: int = 7) -> Dataset:
    """The synthetic market's generating process as arrays (events would need GBs)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32).astype(np.float64)
    wins = rng.random(n) < true_probability(x)
    x[rng.random(size=x.shape) < 0.01] = np.nan
    start = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    ts = start + np.arange(n, dtype=np.int64) * (HOUR_US // 5)
    y = wins.astype(np.int32)
    return Dataset(
        x=x,
        y=y,
        r=np.where(wins, 1.5, -1.0),
        w=np.ones(n),
        ts=ts,
        closed=ts + rng.integers(1, 12, size=n) * HOUR_US,
        names=[f"f{i:02d}" for i in range(N_FEATURES)],
        time_range={},
    )


def test_bench_trainer_vs_bare_lightgbm() -> None:
    params = TrainingParams(num_threads=2)
    t = time.perf_counter()
    data = synthetic_dataset(N_ROWS)
    print(f"\n{N_ROWS:,} rows × {N_FEATURES} features generated in {time.perf_counter() - t:.1f}s")

    blocks = split_blocks(data.ts, data.closed, params.split)
    tr, va = blocks.train, blocks.validation
    pos = float(np.mean(data.y[tr]))
    t = time.perf_counter()
    train_set = lgb.Dataset(data.x[tr], data.y[tr], feature_name=data.names)
    bare = lgb.train(
        lgb_params(params, (1 - pos) / pos),
        train_set,
        num_boost_round=params.num_boost_round,
        valid_sets=[lgb.Dataset(data.x[va], data.y[va], reference=train_set)],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    bare_s = time.perf_counter() - t
    print(f"bare lightgbm.train: {bare_s:.1f}s, best iteration {bare.best_iteration}")

    t = time.perf_counter()
    result = train_dataset(data, params)
    trainer_s = time.perf_counter() - t
    timings = result.timings_s
    no_cv = trainer_s - timings["cv"]
    print(
        f"trainer (train_dataset): {trainer_s:.1f}s = "
        + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    )
    print(
        f"ratio trainer / bare: {trainer_s / bare_s:.2f}x with 5 CV folds, "
        f"{no_cv / bare_s:.2f}x without the CV folds (aim <= 1.2x)"
    )
    print(
        f"test ROC-AUC {result.metrics['test']['roc_auc']:.4f}, "
        f"calibration {result.calibrator.method}, parity max |Δ| "
        f"{result.parity['max_abs_diff']:.2e}, trees {result.booster.current_iteration()}"
    )
    assert result.parity["passed"]
