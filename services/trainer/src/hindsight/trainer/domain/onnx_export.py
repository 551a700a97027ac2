"""ONNX export: the LightGBM graph (zipmap off) with the calibration appended, and parity.

The converter's ``probabilities`` output is renamed; calibration runs in float64 on its
column 1, is clipped to ``[P_MIN, 1 - P_MIN]`` and the graph's final output
``probabilities`` is ``[1 - p, p]`` as float32 (the ONNX contract of the artifact).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxmltools.convert.common.data_types import FloatTensorType

from hindsight.trainer.domain.calibration import EPS, GRID_POINTS, P_MIN, Calibrator
from hindsight.trainer.domain.jsonsafe import JsonObject

__all__ = ["INPUT", "OUTPUT", "ParityError", "check_parity", "export_onnx", "onnx_predict"]

INPUT = "input"
OUTPUT = "probabilities"
_RAW = "lgbm_probabilities_raw"
_OPSET = 13


class ParityError(Exception):
    """The ONNX graph and the in-memory calibrated model disagree."""


def _calibration_nodes(cal: Calibrator) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    def const(name: str, value: Any, dtype: Any = np.float64) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name=name)

    inits = [
        const("cal_starts", [1], np.int64),
        const("cal_ends", [2], np.int64),
        const("cal_axes", [1], np.int64),
        const("cal_zero", 0.0),
        const("cal_one", 1.0),
        const("cal_pmin", P_MIN),
        const("cal_pmax", 1.0 - P_MIN),
    ]
    nodes = [
        helper.make_node("Slice", [_RAW, "cal_starts", "cal_ends", "cal_axes"], ["cal_p32"]),
        helper.make_node("Cast", ["cal_p32"], ["cal_p"], to=TensorProto.DOUBLE),
    ]
    if cal.method == "sigmoid":
        inits += [
            const("cal_eps", EPS),
            const("cal_1meps", 1.0 - EPS),
            const("cal_a", cal.a),
            const("cal_b", cal.b),
        ]
        nodes += [
            helper.make_node("Clip", ["cal_p", "cal_eps", "cal_1meps"], ["cal_q"]),
            helper.make_node("Sub", ["cal_one", "cal_q"], ["cal_1mq"]),
            helper.make_node("Div", ["cal_q", "cal_1mq"], ["cal_odds"]),
            helper.make_node("Log", ["cal_odds"], ["cal_logit"]),
            helper.make_node("Mul", ["cal_logit", "cal_a"], ["cal_az"]),
            helper.make_node("Add", ["cal_az", "cal_b"], ["cal_z"]),
            helper.make_node("Sigmoid", ["cal_z"], ["cal_out_raw"]),
        ]
    else:
        steps = GRID_POINTS - 1
        inits += [
            const("cal_steps", float(steps)),
            const("cal_maxidx", float(steps - 1)),
            const("cal_grid", list(cal.grid_y)),
        ]
        nodes += [
            helper.make_node("Clip", ["cal_p", "cal_zero", "cal_one"], ["cal_pc"]),
            helper.make_node("Mul", ["cal_pc", "cal_steps"], ["cal_pos"]),
            helper.make_node("Floor", ["cal_pos"], ["cal_fl"]),
            helper.make_node("Clip", ["cal_fl", "cal_zero", "cal_maxidx"], ["cal_idxf"]),
            helper.make_node("Sub", ["cal_pos", "cal_idxf"], ["cal_frac"]),
            helper.make_node("Cast", ["cal_idxf"], ["cal_idx"], to=TensorProto.INT64),
            helper.make_node("Gather", ["cal_grid", "cal_idx"], ["cal_y0"], axis=0),
            helper.make_node("Add", ["cal_idxf", "cal_one"], ["cal_idx1f"]),
            helper.make_node("Cast", ["cal_idx1f"], ["cal_idx1"], to=TensorProto.INT64),
            helper.make_node("Gather", ["cal_grid", "cal_idx1"], ["cal_y1"], axis=0),
            helper.make_node("Sub", ["cal_y1", "cal_y0"], ["cal_dy"]),
            helper.make_node("Mul", ["cal_frac", "cal_dy"], ["cal_step"]),
            helper.make_node("Add", ["cal_y0", "cal_step"], ["cal_out_raw"]),
        ]
    nodes += [
        # Never a certainty: the same clip as Calibrator.__call__, so the scorer's answers
        # (p_success and p_failure = 1 - p) stay inside (0, 1) too.
        helper.make_node("Clip", ["cal_out_raw", "cal_pmin", "cal_pmax"], ["cal_out"]),
        helper.make_node("Sub", ["cal_one", "cal_out"], ["cal_neg"]),
        helper.make_node("Concat", ["cal_neg", "cal_out"], ["cal_both"], axis=1),
        helper.make_node("Cast", ["cal_both"], [OUTPUT], to=TensorProto.FLOAT),
    ]
    return nodes, inits


def export_onnx(booster: Any, n_features: int, calibrator: Calibrator) -> bytes:
    """Serialized ONNX model: input ``input`` [None, n] float32 → ``probabilities`` [None, 2]."""
    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT, FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=_OPSET,
    )
    graph = model.graph
    for node in graph.node:
        node.output[:] = [_RAW if out == OUTPUT else out for out in node.output]
    kept = [o for o in graph.output if o.name != OUTPUT]
    del graph.output[:]
    graph.output.extend(kept)
    nodes, inits = _calibration_nodes(calibrator)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 2]))
    del model.opset_import[:]
    model.opset_import.extend(
        [helper.make_opsetid("", _OPSET), helper.make_opsetid("ai.onnx.ml", 1)]
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def onnx_predict(model_bytes: bytes, x: npt.NDArray[Any], *, threads: int = 1) -> npt.NDArray[Any]:
    """Column 1 of ``probabilities`` for ``x`` (cast to float32), as float64."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )
    out = session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return np.asarray(out[:, 1], dtype=np.float64)


def check_parity(
    model_bytes: bytes, x: npt.NDArray[Any], expected: npt.NDArray[Any], *, tolerance: float = 1e-5
) -> JsonObject:
    """Compare the graph's p to ``expected``; raises ParityError beyond ``tolerance``."""
    try:
        got = onnx_predict(model_bytes, x)
    except Exception as exc:  # a broken graph is a parity failure, not a crash
        raise ParityError(f"ONNX model could not be run: {exc}") from exc
    if got.shape != np.shape(expected):
        raise ParityError(f"ONNX output has shape {got.shape}, expected {np.shape(expected)}")
    delta = np.abs(got - np.asarray(expected, dtype=np.float64))
    report = {
        "rows": len(got),
        "max_abs_diff": float(np.max(delta)) if len(delta) else 0.0,
        "mean_abs_diff": float(np.mean(delta)) if len(delta) else 0.0,
        "tolerance": tolerance,
    }
    report["passed"] = bool(report["max_abs_diff"] <= tolerance)
    if not report["passed"]:
        raise ParityError(
            f"ONNX and in-memory model differ by {report['max_abs_diff']:.3g} > {tolerance:g}"
        )
    return report
