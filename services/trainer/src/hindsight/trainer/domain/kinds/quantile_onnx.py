"""One ONNX graph for a quantile member: k boosters → ``quantiles`` [None, k], non-crossing.

Each alpha's booster is converted by onnxmltools (a LightGBM ``quantile`` objective has no
output transform: the converter's ``variable`` [N, 1] is the raw score, the prediction).
The k graphs share the input ``input``; their outputs are concatenated in ascending alpha,
made non-crossing by a running maximum along axis 1 (column j = max of columns 0..j) and
clipped to the member's ``value_range``. :func:`non_crossing` is the same in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxmltools.convert.common.data_types import FloatTensorType

from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.onnx_export import INPUT, ParityError

__all__ = ["OUTPUT", "check_quantile_parity", "export_quantiles", "non_crossing", "run_quantiles"]

OUTPUT = "quantiles"
_OPSET = 13
_CONVERTED_OUTPUT = "variable"


def non_crossing(raw: npt.NDArray[Any], value_range: tuple[float, float]) -> npt.NDArray[Any]:
    """Running maximum along axis 1 (ascending alpha), then clipped to ``value_range``."""
    lo, hi = value_range
    return np.clip(np.maximum.accumulate(np.asarray(raw), axis=1), lo, hi)


def _converted(booster: lgb.Booster, n_features: int, prefix: str) -> onnx.ModelProto:
    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT, FloatTensorType([None, n_features]))],
        target_opset=_OPSET,
    )
    converted: onnx.ModelProto = model
    graph = converted.graph
    inner = {n for node in graph.node for n in node.output} | {i.name for i in graph.initializer}

    def rename(name: str) -> str:
        return f"{prefix}{name}" if name in inner else name

    for node in graph.node:
        node.name = f"{prefix}{node.name}"
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for init in graph.initializer:
        init.name = rename(init.name)
    if [o.name for o in graph.output] != [_CONVERTED_OUTPUT]:
        raise ValueError(f"unexpected converter outputs {[o.name for o in graph.output]}")
    return converted


def export_quantiles(
    boosters: Sequence[lgb.Booster], n_features: int, value_range: tuple[float, float]
) -> bytes:
    """Serialized ONNX: ``input`` [None, n] float32 → ``quantiles`` [None, k] float32."""
    if not boosters:
        raise ValueError("a quantile member needs at least one booster")
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    columns = []
    ir_version = int(onnx.IR_VERSION)
    opsets: dict[str, int] = {"": _OPSET}
    for i, booster in enumerate(boosters):
        converted = _converted(booster, n_features, f"q{i}_")
        # The converter's IR version is one the runtime in use reads (the newest onnx's may not be).
        ir_version = min(ir_version, int(converted.ir_version))
        for opset in converted.opset_import:
            # The converter picks each domain's version (ai.onnx.ml 1 or 3): keep the newest.
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), int(opset.version))
        nodes.extend(converted.graph.node)
        inits.extend(converted.graph.initializer)
        columns.append(f"q{i}_{_CONVERTED_OUTPUT}")
    running = columns[0]
    ordered = [running]
    for i, column in enumerate(columns[1:], start=1):
        # Non-crossing: each column is at least the one before it.
        running_next = f"nc_{i}"
        nodes.append(helper.make_node("Max", [running, column], [running_next]))
        ordered.append(running_next)
        running = running_next
    lo, hi = value_range
    inits += [
        numpy_helper.from_array(np.asarray(lo, dtype=np.float32), name="q_lo"),
        numpy_helper.from_array(np.asarray(hi, dtype=np.float32), name="q_hi"),
    ]
    nodes += [
        helper.make_node("Concat", ordered, ["q_sorted"], axis=1),
        helper.make_node("Clip", ["q_sorted", "q_lo", "q_hi"], [OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "quantile_member",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, len(boosters)])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(domain, v) for domain, v in sorted(opsets.items())],
        producer_name="hindsight-trainer",
    )
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def run_quantiles(model_bytes: bytes, x: npt.NDArray[Any], *, threads: int = 1) -> npt.NDArray[Any]:
    """The graph's ``quantiles`` for ``x`` (cast to float32), as float64."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )
    out = session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float64)


def check_quantile_parity(
    model_bytes: bytes, x: npt.NDArray[Any], expected: npt.NDArray[Any], *, tolerance: float
) -> JsonObject:
    """Compare the graph's quantiles to ``expected``; raises ParityError beyond ``tolerance``."""
    try:
        got = run_quantiles(model_bytes, x)
    except Exception as exc:  # a broken graph is a parity failure, not a crash
        raise ParityError(f"ONNX model could not be run: {exc}") from exc
    if got.shape != np.shape(expected):
        raise ParityError(f"ONNX output has shape {got.shape}, expected {np.shape(expected)}")
    delta = np.abs(got - np.asarray(expected, dtype=np.float64))
    worst = float(np.max(delta)) if delta.size else 0.0
    report: JsonObject = {
        "rows": len(got),
        "max_abs_diff": worst,
        "mean_abs_diff": float(np.mean(delta)) if delta.size else 0.0,
        "tolerance": tolerance,
        "passed": worst <= tolerance,
    }
    if not report["passed"]:
        raise ParityError(f"ONNX and in-memory quantiles differ by {worst:.3g} > {tolerance:g}")
    return report
