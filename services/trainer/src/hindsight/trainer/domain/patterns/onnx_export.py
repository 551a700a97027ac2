"""ONNX export of the calibrated Pattern-CNN, the parity check, the ``metrics.json`` part.

The graph (``pattern_cnn.onnx``): input ``input`` ``[N, 64, 64, 3]`` float32 (the images'
HWC layout, N dynamic); outputs ``probabilities`` ``[N, C]`` (softmax of logits / T, the
calibrated probabilities), ``pole_katr`` ``[N]``, ``embed`` ``[N, 64]`` (unit vectors).
Exported with torch's TorchScript exporter (opset 17): the dynamo exporter needs
``onnxscript``, which the trainer does not carry.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from hindsight.trainer.domain.jsonsafe import JsonObject, jsonable
from hindsight.trainer.domain.patterns.images import CHANNELS, IMAGE_SHAPE
from hindsight.trainer.domain.patterns.network import EMBED_DIM, CalibratedPatternCNN
from hindsight.trainer.domain.patterns.train import TrainedPatternCNN, predict

__all__ = [
    "INPUT",
    "OUTPUTS",
    "PARITY_TOLERANCE",
    "Parity",
    "PatternParityError",
    "check_parity",
    "export_pattern_onnx",
    "metrics_card",
    "onnx_session",
]

INPUT = "input"
OUTPUTS = ("probabilities", "pole_katr", "embed")
PARITY_TOLERANCE = 1e-4
_OPSET = 17


class PatternParityError(Exception):
    """The ONNX graph and the torch model disagree beyond the tolerance."""


@dataclass(frozen=True, slots=True)
class Parity:
    """Largest absolute difference per output, over ``n`` windows."""

    n: int
    max_abs: dict[str, float]

    @property
    def worst(self) -> float:
        """The largest difference of any output."""
        return max(self.max_abs.values())


def export_pattern_onnx(trained: TrainedPatternCNN) -> bytes:
    """The serialised ONNX graph of the model with its temperature."""
    graph = CalibratedPatternCNN(trained.model, trained.temperature).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            graph,
            (torch.zeros((1, *IMAGE_SHAPE), dtype=torch.float32),),
            buf,  # type: ignore[arg-type]  # a file-like object works too
            dynamo=False,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes={name: {0: "batch"} for name in (INPUT, *OUTPUTS)},
            opset_version=_OPSET,
        )
    return buf.getvalue()


def onnx_session(model: bytes | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session on ``threads`` intra-op threads."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def check_parity(
    model: bytes | Path,
    trained: TrainedPatternCNN,
    images: npt.ArrayLike,
    tolerance: float = PARITY_TOLERANCE,
) -> Parity:
    """Every output of the graph within ``tolerance`` of torch's on ``images``, or raise."""
    x = np.ascontiguousarray(images, dtype=np.float32)
    if len(x) == 0:
        raise ValueError("images: parity needs at least one window")
    got = onnx_session(model).run(list(OUTPUTS), {INPUT: x})
    ref = predict(trained.model, x)
    want = (ref.probabilities(trained.temperature), ref.pole_katr, ref.embed)
    diff = {
        name: float(np.max(np.abs(np.asarray(g, np.float64) - np.asarray(w, np.float64))))
        for name, g, w in zip(OUTPUTS, got, want, strict=True)
    }
    parity = Parity(n=len(x), max_abs=diff)
    if not parity.worst <= tolerance:
        raise PatternParityError(f"ONNX vs torch max |diff| {diff} exceeds {tolerance}")
    return parity


def metrics_card(
    trained: TrainedPatternCNN,
    *,
    metrics: JsonObject,
    parity: Parity,
) -> JsonObject:
    """The Pattern-CNN's entry for a release's ``metrics.json``."""
    return dict(
        jsonable(
            {
                "kind": "pattern_cnn",
                "input": {"name": INPUT, "shape": ["N", *IMAGE_SHAPE], "channels": CHANNELS},
                "outputs": {
                    "probabilities": ["N", len(trained.classes)],
                    "pole_katr": ["N"],
                    "embed": ["N", EMBED_DIM],
                },
                "class_map": {name: i for i, name in enumerate(trained.classes)},
                "calibration": {"method": "temperature", "temperature": trained.temperature},
                "training": {
                    "epochs_run": trained.epochs_run,
                    "best_epoch": trained.best_epoch,
                    "seconds": trained.seconds,
                    "widths": list(trained.model.widths),
                },
                "parity": {"n": parity.n, "max_abs": parity.max_abs},
                "metrics": metrics,
            }
        )
    )
