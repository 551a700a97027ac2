"""Model kinds: the quantile graph (non-crossing, parity), binary calibration, metrics."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hindsight.common.artifacts import P_MIN
from hindsight.trainer.domain.kinds import BinaryKind, Block, FittedModel, QuantileKind
from hindsight.trainer.domain.kinds.binary import expected_r, precision_at_k
from hindsight.trainer.domain.kinds.quantile import (
    coverage,
    pinball_loss,
    smape,
    target_utility,
)
from hindsight.trainer.domain.kinds.quantile_onnx import (
    non_crossing,
    run_quantiles,
)
from hindsight.trainer.domain.onnx_export import onnx_predict
from hindsight.trainer.domain.splits import SplitConfig
from hindsight.trainer.domain.training import TrainingParams

pytestmark = pytest.mark.unit

PARAMS = TrainingParams(
    num_threads=1,
    num_boost_round=40,
    early_stopping_rounds=10,
    learning_rate=0.1,
    num_leaves=7,
    bootstrap_resamples=0,
    split=SplitConfig(cv_folds=0),
)
N_FEATURES = 4


@pytest.fixture(scope="module")
def crossing_model() -> tuple[QuantileKind, FittedModel, bytes]:
    """Three quantile boosters whose raw outputs cross: each alpha learns another feature."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1200, N_FEATURES)).astype(np.float32).astype(np.float64)
    x[rng.random(x.shape) < 0.05] = np.nan
    kind = QuantileKind(alphas=(0.2, 0.5, 0.8), served_alpha=0.5)
    boosters = []
    for j, alpha in enumerate(kind.alphas):
        # A target per booster that moves with a different feature, so the columns cross.
        y = 3.0 * np.nan_to_num(x[:, j]) + rng.normal(size=len(x))
        boosters.append(
            lgb.train(kind.lgb_params(PARAMS, alpha), lgb.Dataset(x, y), num_boost_round=30)
        )
    model = FittedModel(
        kind="quantile",
        boosters=boosters,
        feature_names=[f"f{j}" for j in range(N_FEATURES)],
        alphas=list(kind.alphas),
        served_alpha=kind.served_alpha,
        value_range=(-4.0, 5.0),
    )
    raw = np.column_stack([b.predict(x) for b in boosters])
    assert np.any(np.diff(raw, axis=1) < 0), "fixture should produce crossing raw quantiles"
    return kind, model, kind.export(model)


features_matrix = arrays(
    dtype=np.float32,
    shape=st.tuples(st.integers(1, 40), st.just(N_FEATURES)),
    elements=st.one_of(
        st.floats(-1e4, 1e4, width=32, allow_nan=False),
        st.just(np.float32("nan")),
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(x=features_matrix)
def test_quantile_graph_never_crosses_and_matches_numpy(crossing_model, x) -> None:
    kind, model, onnx_bytes = crossing_model
    got = run_quantiles(onnx_bytes, x)
    assert got.shape == (len(x), 3)
    assert np.all(np.diff(got, axis=1) >= 0)
    assert np.all((got >= -4.0) & (got <= 5.0))
    expected = kind.predict(model, x.astype(np.float64))
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_quantile_parity_report(crossing_model) -> None:
    kind, model, onnx_bytes = crossing_model
    x = np.random.default_rng(2).normal(size=(300, N_FEATURES))
    report = kind.check_parity(onnx_bytes, model, x, tolerance=1e-5)
    assert report["passed"] and report["max_abs_diff"] <= 1e-5 and report["rows"] == 300


def test_non_crossing_is_a_running_max_then_clip() -> None:
    raw = np.array([[3.0, 1.0, 2.0], [-9.0, 0.0, 9.0]])
    np.testing.assert_array_equal(
        non_crossing(raw, (-1.0, 2.5)), [[2.5, 2.5, 2.5], [-1.0, 0.0, 2.5]]
    )


def test_quantile_kind_rejects_bad_alphas() -> None:
    with pytest.raises(ValueError, match="ascending"):
        QuantileKind(alphas=(0.7, 0.6), served_alpha=0.7)
    with pytest.raises(ValueError, match="served_alpha"):
        QuantileKind(alphas=(0.6, 0.7), served_alpha=0.5)


def test_small_calibration_block_uses_sigmoid_and_never_certainties() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2400, N_FEATURES)).astype(np.float32).astype(np.float64)
    y = (x[:, 0] > 0).astype(np.float64)  # separable: raw scores reach ~0 and ~1
    train, valid = Block(x[:1800], y[:1800]), Block(x[1800:], y[1800:])
    assert len(valid) < 1000
    kind = BinaryKind()
    model = kind.fit(train, valid, PARAMS, feature_names=[f"f{j}" for j in range(N_FEATURES)])
    assert model.calibrator is not None and model.calibrator.method == "sigmoid"
    assert "sigmoid" in model.calibrator.scores["rule"]
    extreme = np.vstack([x, np.full((1, N_FEATURES), 50.0), np.full((1, N_FEATURES), -50.0)])
    p = kind.predict(model, extreme)
    assert p.min() >= P_MIN and p.max() <= 1.0 - P_MIN
    onnx_p = onnx_predict(kind.export(model), extreme)
    assert np.all((onnx_p > 0.0) & (onnx_p < 1.0))
    np.testing.assert_allclose(onnx_p, p, atol=1e-5)


def test_binary_metrics_include_precision_at_k_and_expected_r() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, N_FEATURES)).astype(np.float32).astype(np.float64)
    y = (x[:, 0] + rng.normal(size=3000) > 0).astype(np.float64)
    r = np.where(y == 1, 1.0, -1.0)
    group = np.array([f"S{i % 3}|2025-01-{1 + i // 300:02d}" for i in range(3000)], dtype=object)
    kind = BinaryKind(threshold=0.6, k=2)
    model = kind.fit(
        Block(x[:2000], y[:2000]),
        Block(x[2000:2500], y[2000:2500]),
        PARAMS,
        feature_names=[f"f{j}" for j in range(N_FEATURES)],
    )
    metrics = kind.evaluate(
        model, Block(x[2500:], y[2500:], r=r[2500:], group=group[2500:]), PARAMS
    )
    figures = kind.gate_figures(metrics)
    assert figures["test_rows"] == 500
    assert metrics["precision_at_k"]["k"] == 2 and metrics["precision_at_k"]["groups"] == 6
    assert figures["roc_auc"] > 0.7 and figures["precision_at_k"] > 0.6
    assert metrics["expected_r"]["threshold"] == 0.6 and figures["expected_r"] > 0


def test_precision_at_k_by_hand() -> None:
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    p = np.array([0.9, 0.8, 0.1, 0.2, 0.7])
    group = np.array(["a", "a", "a", "b", "b"], dtype=object)
    # a: top-1 is row 0 (hit); b: top-1 is row 4 (hit) → 2 / 2; top-2: a rows 0, 1; b rows 4, 3.
    assert precision_at_k(y, p, group, 1)["precision"] == 1.0
    assert precision_at_k(y, p, group, 2)["precision"] == 3 / 4


def test_expected_r_by_hand() -> None:
    out = expected_r(np.array([0.9, 0.5, 0.7]), np.array([2.0, -1.0, -1.0]), 0.6)
    assert out == {"threshold": 0.6, "trades": 2, "expected_r": 0.5, "total_r": 1.0}


def test_quantile_metrics_by_hand() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    q = np.array([2.0, 2.0, 2.0, 2.0])
    # alpha 0.5: losses 0.5, 0, 0.5, 1.0 → mean 0.5
    assert pinball_loss(y, q, 0.5) == pytest.approx(0.5)
    # alpha 0.9: (1-0.9)*1, 0, 0.9*1, 0.9*2 → 2.8 / 4
    assert pinball_loss(y, q, 0.9) == pytest.approx(0.7)
    assert coverage(y, q) == 0.5
    assert smape(np.array([0.0, 1.0]), np.array([0.0, 3.0])) == pytest.approx(0.5)
    # runs 1, 2, 3, 4 with a 2 R target: hits at 2, 3, 4 → 6 / 4
    assert target_utility(y, q) == pytest.approx(1.5)
