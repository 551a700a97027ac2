"""One training run, end to end in memory: split, CV, fit, calibrate, evaluate, export.

Deterministic for a seed (LightGBM ``deterministic=True``, fixed threads, seeded
bootstrap). No I/O: the caller loads the rows and writes the artifact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from hindsight.common.events import format_utc
from hindsight.trainer.domain.calibration import Calibrator, choose_calibrator
from hindsight.trainer.domain.fitting import FitRequest, Fitter, LocalFitter
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.metrics import classification_metrics, roc_auc
from hindsight.trainer.domain.onnx_export import check_parity, export_onnx
from hindsight.trainer.domain.rows import (
    LABEL_WEIGHTS,
    TrainingRow,
    feature_matrix,
    target,
    trade_r,
)
from hindsight.trainer.domain.splits import SplitConfig, cv_folds, split_blocks, to_micros
from hindsight.trainer.domain.trading import Gates, recommend, trading_metrics

__all__ = [
    "BaselinePredictor",
    "Dataset",
    "IntervalBin",
    "TrainingParams",
    "TrainingResult",
    "interval_bins",
    "lgb_params",
    "reference_distributions",
    "build_dataset",
    "ordered",
    "train_dataset",
    "train_model",
]

FloatArray = npt.NDArray[np.float64]
BaselinePredictor = Callable[[FloatArray], FloatArray]
"""Production model's calibrated p for a feature matrix in the candidate's column order."""


@dataclass(frozen=True, slots=True)
class TrainingParams:
    """Everything that shapes a run's model (recorded in metrics.json)."""

    seed: int = 42
    num_threads: int = 2
    num_boost_round: int = 500
    early_stopping_rounds: int = 50
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    split: SplitConfig = field(default_factory=SplitConfig)
    gates: Gates = field(default_factory=Gates)
    bootstrap_resamples: int = 200
    parity_tolerance: float = 1e-5
    label_weights: dict[str, float] = field(default_factory=lambda: dict(LABEL_WEIGHTS))


class IntervalBin(TypedDict):
    """A bin of the calibrated p on the validation block (the card's ``interval_bins``)."""

    lo: float
    hi: float
    n: int
    positives: int


@dataclass(slots=True)
class TrainingResult:
    """What a successful run produced."""

    booster: lgb.Booster
    calibrator: Calibrator
    onnx_bytes: bytes
    feature_names: list[str]
    nan_allowed: list[str]
    metrics: JsonObject
    interval_bins: list[IntervalBin]
    reference: JsonObject
    parity: JsonObject
    row_counts: dict[str, int]
    data_time_range: dict[str, str]
    timings_s: dict[str, float]
    row_blocks: list[str] = field(default_factory=list)
    """Per row, in :func:`ordered` order: ``train``, ``validation``, ``test`` or
    ``embargoed`` (dropped between blocks)."""


def ordered(rows: Sequence[TrainingRow]) -> list[TrainingRow]:
    """The rows in the order a run sees them: by ``ts``, then ``signal_id``."""
    return sorted(rows, key=lambda r: (r.ts, r.signal_id))


def lgb_params(params: TrainingParams, scale_pos_weight: float) -> dict[str, object]:
    """LightGBM parameters of a run (class balancing via ``scale_pos_weight``)."""
    return {
        "objective": "binary",
        "metric": ["binary_logloss", "auc"],
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_data_in_leaf": params.min_data_in_leaf,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": params.bagging_freq,
        "lambda_l2": params.lambda_l2,
        "scale_pos_weight": scale_pos_weight,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": params.num_threads,
        "verbosity": -1,
    }


def _predict(booster: lgb.Booster, x: FloatArray, num_iteration: int | None = None) -> FloatArray:
    return np.asarray(booster.predict(x, num_iteration=num_iteration), dtype=np.float64)


def _pos_weight(y: npt.NDArray[np.int32]) -> float:
    pos = int(np.sum(y == 1))
    return (len(y) - pos) / pos if pos else 1.0


def _fit(
    params: TrainingParams,
    x: FloatArray,
    y: npt.NDArray[np.int32],
    w: FloatArray | None,
    x_val: FloatArray,
    y_val: npt.NDArray[np.int32],
    names: list[str],
    fitter: Fitter | None = None,
) -> lgb.Booster:
    return (fitter or LocalFitter()).fit(
        FitRequest(
            params=lgb_params(params, _pos_weight(y)),
            x=x,
            y=y,
            weight=w,
            x_valid=x_val,
            y_valid=y_val,
            feature_names=names,
            num_boost_round=params.num_boost_round,
            early_stopping_rounds=params.early_stopping_rounds,
        )
    )


def interval_bins(y: npt.NDArray[Any], p: FloatArray, bins: int = 10) -> list[IntervalBin]:
    """10 equal-width bins of the calibrated p (validation block): n and positives each."""
    idx = np.clip((np.asarray(p) * bins).astype(np.int64), 0, bins - 1)
    return [
        IntervalBin(
            lo=b / bins,
            hi=(b + 1) / bins,
            n=int(np.sum(idx == b)),
            positives=int(np.sum((idx == b) & (np.asarray(y) == 1))),
        )
        for b in range(bins)
    ]


REFERENCE_SAMPLE = 100_000


def reference_distributions(
    x: FloatArray, names: Sequence[str], *, max_rows: int = REFERENCE_SAMPLE
) -> JsonObject:
    """Per feature, on the train block: decile edges, counts per decile, missing count.

    Computed on at most ``max_rows`` evenly spaced rows (deciles of 100k rows are exact to
    well under a percentile; drift checks compare proportions). ``rows`` says how many.
    """
    step = max(1, -(-len(x) // max_rows))
    sample = x[::step]
    out: JsonObject = {}
    for j, name in enumerate(names):
        col = sample[:, j]
        present = col[~np.isnan(col)]
        if len(present) == 0:
            out[name] = {"edges": [], "counts": [], "missing": int(len(col)), "rows": len(col)}
            continue
        edges = np.unique(np.quantile(present, np.linspace(0, 1, 11)))
        inner = edges[1:-1]
        counts = np.bincount(
            np.searchsorted(inner, present, side="right"), minlength=len(inner) + 1
        )
        out[name] = {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
            "missing": int(len(col) - len(present)),
            "rows": int(len(col)),
            "mean": float(np.mean(present)),
            "std": float(np.std(present)),
        }
    return out


def _span_s(ts_us: npt.NDArray[np.int64]) -> float:
    return float(ts_us[-1] - ts_us[0]) / 1e6 if len(ts_us) else 0.0


@dataclass(frozen=True, slots=True)
class Dataset:
    """The rows as arrays, sorted by ``ts`` (what :func:`train_dataset` takes)."""

    x: FloatArray
    y: npt.NDArray[np.int32]
    r: FloatArray
    w: FloatArray
    ts: npt.NDArray[np.int64]
    closed: npt.NDArray[np.int64]
    names: list[str]
    time_range: dict[str, str]


def build_dataset(
    rows: Sequence[TrainingRow], feature_names: Sequence[str], params: TrainingParams
) -> Dataset:
    """Sort ``rows`` by time and turn them into arrays (float32-exact features)."""
    rows = ordered(rows)
    names = list(feature_names)
    return Dataset(
        # Float32 is what ONNX sees: train and evaluate on exactly those values.
        x=feature_matrix(rows, names).astype(np.float32).astype(np.float64),
        y=target(rows),
        r=trade_r(rows),
        w=np.array([params.label_weights.get(row.label or "", 1.0) for row in rows]),
        ts=to_micros([row.ts for row in rows]),
        closed=to_micros([row.closed_at for row in rows]),
        names=names,
        time_range=(
            {"start": format_utc(rows[0].ts), "end": format_utc(rows[-1].ts)} if rows else {}
        ),
    )


def train_model(
    rows: Sequence[TrainingRow],
    feature_names: Sequence[str],
    params: TrainingParams,
    *,
    baseline: BaselinePredictor | None = None,
    baseline_note: str | None = None,
    fitter: Fitter | None = None,
) -> TrainingResult:
    """Train, calibrate, evaluate on the untouched test block, export and check parity.

    ``fitter`` fits the main booster (in process when None; a Dask cluster's, see
    :mod:`hindsight.trainer.dask_fitting`); the CV folds always fit in process.
    Raises ``ValueError`` for too few rows and ``ParityError`` when ONNX disagrees.
    """
    t0 = time.perf_counter()
    data = build_dataset(rows, feature_names, params)
    prepare = time.perf_counter() - t0
    result = train_dataset(
        data, params, baseline=baseline, baseline_note=baseline_note, fitter=fitter
    )
    result.timings_s["prepare"] += prepare
    return result


def train_dataset(
    data: Dataset,
    params: TrainingParams,
    *,
    baseline: BaselinePredictor | None = None,
    baseline_note: str | None = None,
    fitter: Fitter | None = None,
) -> TrainingResult:
    """:func:`train_model` on arrays already sorted by time."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    x, y, r, w, ts, closed, names = (
        data.x,
        data.y,
        data.r,
        data.w,
        data.ts,
        data.closed,
        data.names,
    )
    blocks = split_blocks(ts, closed, params.split)
    tr, va, te = blocks.train, blocks.validation, blocks.test
    for name, block in (("train", tr), ("validation", va), ("test", te)):
        if len(block) == 0 or len(np.unique(y[block])) < 2:
            raise ValueError(f"the {name} block is empty or holds a single class")
    timings["prepare"] = time.perf_counter() - t0

    t = time.perf_counter()
    weights = w[tr] if np.any(w[tr] != 1.0) else None
    booster = _fit(params, x[tr], y[tr], weights, x[va], y[va], names, fitter)
    timings["fit"] = time.perf_counter() - t

    # CV estimates stability; each fold trains with the main fit's number of trees, so
    # no fold's validation rows choose anything (and CV costs ~2.5 fits, not 5 searches).
    t = time.perf_counter()
    folds = []
    rounds = max(1, booster.best_iteration or booster.current_iteration())
    for k, fold in enumerate(cv_folds(ts[tr], closed[tr], params.split)):
        ftr, fva = tr[fold.train], tr[fold.validation]
        if len(np.unique(y[ftr])) < 2 or len(np.unique(y[fva])) < 2:
            continue
        model = lgb.train(
            lgb_params(params, _pos_weight(y[ftr])),
            lgb.Dataset(x[ftr], y[ftr], weight=w[ftr], feature_name=names),
            num_boost_round=rounds,
        )
        folds.append(
            {
                "fold": k,
                "train_rows": len(ftr),
                "validation_rows": len(fva),
                "train_end": int(ts[ftr].max()),
                "validation_start": int(ts[fva].min()),
                "roc_auc": roc_auc(y[fva], _predict(model, x[fva])),
            }
        )
    timings["cv"] = time.perf_counter() - t

    t = time.perf_counter()
    raw_va = _predict(booster, x[va], booster.best_iteration)
    calibrator = choose_calibrator(raw_va, y[va])
    # Freeze the chosen number of trees into the model that is saved and exported.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    p_va = calibrator(_predict(booster, x[va]))
    p_te = calibrator(_predict(booster, x[te]))
    test = classification_metrics(
        y[te], p_te, bootstrap_resamples=params.bootstrap_resamples, seed=params.seed
    )
    gates = params.gates
    trading = trading_metrics(
        p_te,
        r[te],
        span_s=_span_s(ts[te]),
        threshold=gates.threshold,
        risk_per_trade=gates.risk_per_trade,
    )
    production: JsonObject | None = None
    if baseline is not None:
        p_prod = baseline(x[te])
        production = {
            "test": classification_metrics(
                y[te], p_prod, bootstrap_resamples=params.bootstrap_resamples, seed=params.seed
            ),
            "trading": trading_metrics(
                p_prod,
                r[te],
                span_s=_span_s(ts[te]),
                threshold=gates.threshold,
                risk_per_trade=gates.risk_per_trade,
            ),
            "note": baseline_note,
        }
    elif baseline_note:
        production = {"unavailable": baseline_note}
    recommendation = recommend(
        trading,
        None
        if production is None
        else (
            {"unavailable": production["unavailable"]}
            if "unavailable" in production
            else production["trading"]
        ),
        gates,
    )
    gain = booster.feature_importance(importance_type="gain")
    importance = dict(
        sorted(((n, float(g)) for n, g in zip(names, gain, strict=True)), key=lambda kv: -kv[1])
    )
    timings["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    onnx_bytes = export_onnx(booster, len(names), calibrator)
    parity = check_parity(onnx_bytes, x[te], p_te, tolerance=params.parity_tolerance)
    timings["export"] = time.perf_counter() - t

    x_train = x[tr]
    has_nan = np.asarray(np.isnan(x_train).any(axis=0), dtype=bool).tolist()
    nan_allowed = [n for n, missing in zip(names, has_nan, strict=True) if missing]
    metrics: JsonObject = {
        "test": test,
        "validation": {"roc_auc": roc_auc(y[va], p_va), "n": len(va)},
        "cv": {
            "folds": folds,
            "mean_roc_auc": float(np.mean([f["roc_auc"] for f in folds])) if folds else None,
        },
        "production": production,
        "trading": trading,
        "recommendation": recommendation["decision"],
        "recommendation_detail": recommendation,
        "feature_importance_gain": importance,
        "best_iteration": booster.current_iteration(),
        "lightgbm_params": lgb_params(params, _pos_weight(y[tr])),
        "headline": {
            "roc_auc": test["roc_auc"],
            "pr_auc": test["pr_auc"],
            "brier": test["brier"],
            "ece": test["ece"],
            "log_loss": test["log_loss"],
            "win_rate": trading["win_rate"],
            "sharpe": trading["sharpe"],
            "trades": trading["trades"],
            "recommendation": recommendation["decision"],
            "test_rows": len(te),
        },
    }
    return TrainingResult(
        booster=booster,
        calibrator=calibrator,
        onnx_bytes=onnx_bytes,
        feature_names=names,
        nan_allowed=nan_allowed,
        metrics=metrics,
        interval_bins=interval_bins(y[va], p_va),
        reference=reference_distributions(x_train, names),
        parity=parity,
        row_counts={
            "total": len(y),
            "train": len(tr),
            "validation": len(va),
            "test": len(te),
            "embargoed": len(blocks.dropped),
            "train_label_weighted": int(np.sum(w[tr] != 1.0)),
        },
        data_time_range=data.time_range,
        timings_s=timings,
        row_blocks=_row_blocks(len(y), tr, va, te),
    )


def _row_blocks(
    n: int, tr: npt.NDArray[np.int64], va: npt.NDArray[np.int64], te: npt.NDArray[np.int64]
) -> list[str]:
    blocks = np.full(n, "embargoed", dtype=object)
    blocks[tr], blocks[va], blocks[te] = "train", "validation", "test"
    return [str(b) for b in blocks]
