from __future__ import annotations

import lightgbm as lgb
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hindsight.trainer.domain.calibration import P_MIN, fit_isotonic, fit_sigmoid
from hindsight.trainer.domain.onnx_export import ParityError, check_parity, export_onnx

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model() -> tuple[lgb.Booster, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = (np.nan_to_num(x[:, 0]) + rng.normal(size=1500) > 0).astype(int)
    x = x.astype(np.float32).astype(np.float64)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=40)
    return booster, x, y


@pytest.mark.parametrize("fit", [fit_sigmoid, fit_isotonic])
def test_onnx_matches_the_calibrated_model(model, fit) -> None:
    booster, x, y = model
    raw = booster.predict(x)
    cal = fit(raw, y)
    blob = export_onnx(booster, x.shape[1], cal)
    report = check_parity(blob, x, cal(raw))
    assert report["passed"] and report["max_abs_diff"] <= 1e-5
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    out = session.run(["probabilities"], {"input": x.astype(np.float32)})[0]
    assert out.dtype == np.float32 and out.shape == (len(x), 2)
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-6)


def test_mismatching_model_fails_parity(model) -> None:
    booster, x, y = model
    raw = booster.predict(x)
    blob = export_onnx(booster, x.shape[1], fit_sigmoid(raw, y))
    with pytest.raises(ParityError):
        check_parity(blob, x, fit_isotonic(raw, y)(raw))


def test_corrupted_onnx_fails_parity(model) -> None:
    booster, x, y = model
    raw = booster.predict(x)
    cal = fit_sigmoid(raw, y)
    blob = bytearray(export_onnx(booster, x.shape[1], cal))
    blob[len(blob) // 2 : len(blob) // 2 + 64] = b"\x00" * 64
    with pytest.raises(ParityError):
        check_parity(bytes(blob), x, cal(raw))


def test_tampered_calibration_fails_parity(model) -> None:
    booster, x, y = model
    raw = booster.predict(x)
    cal = fit_sigmoid(raw, y)
    proto = onnx.load_from_string(export_onnx(booster, x.shape[1], cal))
    for init in proto.graph.initializer:
        if init.name == "cal_a":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array(cal.a * 1.01), "cal_a"))
    with pytest.raises(ParityError):
        check_parity(proto.SerializeToString(), x, cal(raw))


@pytest.mark.parametrize("fit", [fit_sigmoid, fit_isotonic])
def test_the_graph_never_answers_a_certainty(model, fit) -> None:
    """Issue 13: a calibrator fit on a small, separable block maps to exactly 0 and 1; the
    graph (what the scorer serves) clips like the calibrator, in its float32 output too."""
    booster, x, _ = model
    raw = booster.predict(x)
    y_sep = (raw >= np.median(raw)).astype(int)[:300]
    cal = fit(raw[:300], y_sep)
    blob = export_onnx(booster, x.shape[1], cal)
    assert check_parity(blob, x, cal(raw))["passed"]
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    out = session.run(["probabilities"], {"input": x.astype(np.float32)})[0]
    assert np.all(out > 0.0) and np.all(out < 1.0)
    assert out[:, 1].min() == np.float32(P_MIN) and out[:, 1].max() == np.float32(1 - P_MIN)
    assert np.all(1.0 - out[:, 1].astype(np.float64) > 0.0)  # the scorer's p_failure
