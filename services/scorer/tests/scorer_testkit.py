"""Scorer test kit: real artifacts per the ONNX contract and small gRPC helpers.

The artifact builder trains a small LightGBM on random data with a known signal, converts
it with onnxmltools (zipmap off), appends a linear calibration so that the graph's output
``probabilities`` is calibrated, and writes model.onnx, model.txt and metrics.json.
It does not import the trainer.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import lightgbm as lgb
import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
from onnx import TensorProto, helper
from onnxmltools.convert.common.data_types import FloatTensorType

from hindsight.common.artifacts import (
    METRICS_FILE,
    MODEL_FILE,
    ONNX_FILE,
    IntervalBin,
    ModelCard,
    artifact_dir,
    artifact_uri,
    sha256_file,
)
from hindsight.common.grpc_server import GrpcServer
from hindsight.common.limits import MAX_FORWARDED_BYTES, max_receive_option
from hindsight.scorer.dataplane import DataPlane
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.models import LoadedModel, ModelStore
from hindsight.scorer.domain.scoring import Score, score_columns
from hindsight.scorer.grpc_api import SERVICE_NAME, ScoringServicer
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

CAL_SCALE = 0.9
CAL_SHIFT = 0.05


@dataclass
class Artifact:
    """A written artifact and what tests need to check answers against it."""

    model_name: str
    version: str
    uri: str
    directory: Path
    sha256: str
    feature_names: list[str]
    nan_allowed: list[str]

    def session(self) -> ort.InferenceSession:
        return ort.InferenceSession(str(self.directory / ONNX_FILE))

    def p_success(self, matrix: np.ndarray) -> np.ndarray:
        x = np.asarray(matrix, dtype=np.float32)
        return self.session().run(["probabilities"], {"input": x})[0][:, 1]

    def booster(self) -> lgb.Booster:
        return lgb.Booster(model_file=str(self.directory / MODEL_FILE))

    def deployment(self, stage: str = "production") -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "stage": stage,
            "artifact_uri": self.uri,
            "sha256": self.sha256,
        }


def _calibrated(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rename the converter's output and append ``probabilities = shift + scale * raw``."""
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["raw_probabilities" if o == "probabilities" else o for o in node.output]
    graph.initializer.extend(
        [
            helper.make_tensor("cal_scale", TensorProto.FLOAT, [], [CAL_SCALE]),
            helper.make_tensor("cal_shift", TensorProto.FLOAT, [], [CAL_SHIFT]),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Mul", ["raw_probabilities", "cal_scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "cal_shift"], ["probabilities"]),
        ]
    )
    outputs = [o for o in graph.output if o.name != "probabilities"]
    del graph.output[:]
    graph.output.extend(
        [*outputs, helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])]
    )
    onnx.checker.check_model(model)
    return model


def build_artifact(
    root: Path,
    *,
    version: str,
    model_name: str = "trade_success",
    n_features: int = 6,
    n_trees: int = 20,
    seed: int = 7,
    nan_allowed: tuple[str, ...] = (),
    rows: int = 2000,
    num_leaves: int = 15,
    reference: bool = True,
) -> Artifact:
    """Train, convert, calibrate and write one artifact under ``root``."""
    rng = np.random.default_rng(seed)
    names = [f"f{i:02d}" for i in range(n_features)]
    x = rng.normal(size=(rows, n_features)).astype(np.float32)
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2 % n_features]
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    for name in nan_allowed:
        col = names.index(name)
        x[rng.random(rows) < 0.1, col] = np.nan
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": num_leaves, "num_threads": 1},
        lgb.Dataset(x, y, feature_name=names),
        num_boost_round=n_trees,
    )
    onnx_model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=15,
    )
    onnx_model = _calibrated(onnx_model)
    directory = artifact_dir(root, model_name, version)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ONNX_FILE).write_bytes(onnx_model.SerializeToString())
    booster.save_model(str(directory / MODEL_FILE))
    sha = sha256_file(directory / ONNX_FILE)
    session = ort.InferenceSession(str(directory / ONNX_FILE))
    p_val = session.run(["probabilities"], {"input": x[: rows // 4]})[0][:, 1]
    counts = np.histogram(np.clip(p_val, 0, 1), bins=10, range=(0, 1))[0]
    positives = np.histogram(np.clip(p_val, 0, 1)[y[: rows // 4] == 1], bins=10, range=(0, 1))[0]
    card = {
        "model_name": model_name,
        "version": version,
        "training_run_id": f"run-{version}",
        "created_at": datetime.now(UTC).isoformat(),
        "feature_names": names,
        "feature_schema_version": 1,
        "nan_allowed": list(nan_allowed),
        "onnx_sha256": sha,
        "metrics": {"test": {"roc_auc": 0.7}},
        "interval_bins": [
            {"lo": i / 10, "hi": (i + 1) / 10, "n": int(counts[i]), "positives": int(positives[i])}
            for i in range(10)
        ],
    }
    if reference:
        card["reference_distributions"] = reference_distributions(x, names)
    (directory / METRICS_FILE).write_text(json.dumps(card))
    return Artifact(
        model_name,
        version,
        artifact_uri(model_name, version),
        directory,
        sha,
        names,
        list(nan_allowed),
    )


def reference_distributions(x: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Per feature: decile edges, counts per bin, missing (as the trainer writes them)."""
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        col = x[:, j].astype(np.float64)
        present = col[~np.isnan(col)]
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


def training_like(n: int, n_features: int = 6, *, seed: int = 0) -> np.ndarray:
    """Rows drawn like ``build_artifact``'s training data (standard normal features)."""
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(np.float32)


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    features: dict[str, float], *, signal_id: str = "sig-1", **fields: Any
) -> scoring_pb2.ScoreRequest:
    """A valid ScoreRequest around ``features``."""
    fields.setdefault("side", "buy")
    return scoring_pb2.ScoreRequest(signal_id=signal_id, features=features, **fields)


def stub(channel: grpc.aio.Channel) -> scoring_pb2_grpc.ScoringStub:
    return scoring_pb2_grpc.ScoringStub(channel)


NAMES = ["a", "b", "c"]


class LinearPredictor:
    """p = sigmoid(sum of the row); contributions = the row values then bias 0."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        self.calls += 1
        return (1 / (1 + np.exp(-matrix.astype(np.float64).sum(axis=1)))).astype(np.float32)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return np.hstack([matrix.astype(np.float64), np.zeros((len(matrix), 1))])


def make_model(version: str = "v1", *, name: str = "m", stage: str = "production") -> LoadedModel:
    card = ModelCard(
        model_name=name,
        version=version,
        training_run_id="r",
        created_at=datetime.now(UTC),
        feature_names=NAMES,
        feature_schema_version=1,
        nan_allowed=["c"],
        onnx_sha256="0" * 64,
        interval_bins=[
            IntervalBin(lo=i / 10, hi=(i + 1) / 10, n=100, positives=50) for i in range(10)
        ],
    )
    deployment = Deployment(name, version, stage, f"models/{name}/{version}", "0" * 64)  # type: ignore[arg-type]
    return LoadedModel.build(deployment, card, LinearPredictor(), loaded_at=datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch, resolved to its model (row objects, for tests)."""

    model: LoadedModel
    features: Mapping[str, float]
    explain: bool


def score_batch(items: Sequence[BatchItem]) -> list[Score]:
    """:func:`score_columns` with one :class:`Score` per row (a test adapter)."""
    scores = score_columns(
        [item.model for item in items],
        [item.features for item in items],
        [item.explain for item in items],
    )
    return [
        Score(p, low, high, contrib)
        for p, low, high, contrib in zip(
            scores.p_success, scores.ci_low, scores.ci_high, scores.contributions, strict=True
        )
    ]


async def start_servicer(model: LoadedModel) -> GrpcServer:
    """The real scorer servicer serving ``model`` on a real port, with the scorer's
    maximum receive size (no loader, NATS or HTTP: for tests of the gRPC surface)."""
    store = ModelStore(default_model=model.name)
    store.install(model, serve=True)
    servicer = ScoringServicer(DataPlane(store, None))
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        register=[lambda s: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        options=[max_receive_option(MAX_FORWARDED_BYTES)],
    )
    await server.start()
    return server
