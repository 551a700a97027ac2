"""Family releases for the scorer's tests: real ONNX members per the family contract.

Entry members are small LightGBM classifiers converted with onnxmltools (zipmap off), their
``probabilities`` clipped to ``[P_MIN, 1 - P_MIN]`` inside the graph; the pooled one reads
``CLUSTER_FEATURE`` as its last input. Quantile members are hand-built graphs
(``quantiles = Clip(x @ W + b)``, the columns of ``W`` equal and ``b`` ascending, so the
quantiles never cross) reading a subset of the family's features in their own order.
Expected answers are computed here straight from the member files with ONNX Runtime, by
feature name, without the scorer's code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
from onnx import TensorProto, helper
from onnxmltools.convert.common.data_types import FloatTensorType

from hindsight.common.artifacts import METRICS_FILE, P_MIN
from hindsight.common.family import (
    CLUSTER_CODES,
    CLUSTER_FEATURE,
    FamilyCard,
    family_dir,
    family_uri,
)

FEATURES = ["f0", "f1", "f2", "f3", "f4"]
# The last feature may be NaN; with the linear quantile members only the entry members read
# it (LightGBM handles missing values).
QUANTILE_INPUTS = {
    "risk": ["f2", "f0", "f1"],  # a subset, in its own order
    "rr": FEATURES[:-1],
    "offset": ["f3", "f1"],
}
QUANTILE_ALPHAS = {"risk": [0.6, 0.7, 0.8], "rr": [0.4, 0.6], "offset": [0.25, 0.5, 0.75]}
SERVED = {"risk": 0.7, "rr": 0.6, "offset": 0.5}
RANGES = {"risk": (0.2, 4.0), "rr": (0.5, 6.0), "offset": (-1.5, 1.5)}
DEFAULT_ROUTING = {"H": "entry_H", "M": "entry_pooled", "L": "entry_L"}


@dataclass
class FamilyRelease:
    """A written release and what tests need to check answers against it."""

    family: str
    version: str
    uri: str
    directory: Path
    sha256: str
    card: FamilyCard
    sessions: dict[str, ort.InferenceSession] = field(default_factory=dict, repr=False)

    def deployment(self, stage: str = "production") -> dict[str, Any]:
        return {
            "model_name": self.family,
            "version": self.version,
            "stage": stage,
            "artifact_uri": self.uri,
            "sha256": self.sha256,
        }

    def member_output(self, name: str, features: Mapping[str, float], cluster: str = "") -> Any:
        """The member's ONNX output row for a request's features (by name), run directly."""
        member = self.card.member(name)
        assert member is not None
        session = self.sessions.get(name)
        if session is None:
            session = self.sessions[name] = ort.InferenceSession(
                str(self.directory / member.file), providers=["CPUExecutionProvider"]
            )
        row = [
            CLUSTER_CODES.get(cluster, np.nan) if f == CLUSTER_FEATURE else features[f]
            for f in member.features
        ]
        x = np.array([row], dtype=np.float32)
        return session.run([member.output], {"input": x})[0][0]

    def expected(self, features: Mapping[str, float], cluster: str = "") -> dict[str, Any]:
        """Every head as the member files answer it: value, member, version, quantiles."""
        entry_name = self.card.entry_routing.get(cluster, "entry_pooled")  # type: ignore[call-overload]
        entry = self.card.member(entry_name)
        assert entry is not None
        heads: dict[str, Any] = {
            "entry": {
                "value": float(self.member_output(entry_name, features, cluster)[1]),
                "member": entry_name,
                "version": entry.version,
                "quantiles": [],
                "alphas": [],
            }
        }
        for head in ("risk", "rr", "offset"):
            member = next(m for m in self.card.members if m.head == head)
            out = [float(v) for v in self.member_output(member.name, features, cluster)]
            heads[head] = {
                "value": out[member.alphas.index(SERVED[head])],
                "member": member.name,
                "version": member.version,
                "quantiles": out,
                "alphas": member.alphas,
            }
        return heads


def _entry_onnx(booster: lgb.Booster, width: int) -> onnx.ModelProto:
    model = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, width]))],
        zipmap=False,
        target_opset=15,
    )
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 13)  # Clip with min/max inputs
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["raw_probabilities" if o == "probabilities" else o for o in node.output]
    graph.initializer.extend(
        [
            helper.make_tensor("p_min", TensorProto.FLOAT, [], [P_MIN]),
            helper.make_tensor("p_max", TensorProto.FLOAT, [], [1.0 - P_MIN]),
        ]
    )
    graph.node.append(
        helper.make_node("Clip", ["raw_probabilities", "p_min", "p_max"], ["probabilities"])
    )
    outputs = [o for o in graph.output if o.name != "probabilities"]
    del graph.output[:]
    graph.output.extend(
        [*outputs, helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])]
    )
    onnx.checker.check_model(model)
    return model


def quantile_onnx(
    weights: Sequence[float], bias: Sequence[float], value_range: tuple[float, float]
) -> onnx.ModelProto:
    """``quantiles = Clip(x @ W + b, lo, hi)``: one column per bias, never crossing."""
    width, k = len(weights), len(bias)
    w = np.repeat(np.asarray(weights, dtype=np.float32)[:, None], k, axis=1)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["raw"]),
            helper.make_node("Clip", ["raw", "lo", "hi"], ["quantiles"]),
        ],
        "quantile_member",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("quantiles", TensorProto.FLOAT, [None, k])],
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [width, k], w.flatten().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [k], list(bias)),
            helper.make_tensor("lo", TensorProto.FLOAT, [], [value_range[0]]),
            helper.make_tensor("hi", TensorProto.FLOAT, [], [value_range[1]]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def lightgbm_quantile_onnx(
    x: np.ndarray,
    y: np.ndarray,
    alphas: Sequence[float],
    value_range: tuple[float, float],
    *,
    n_trees: int,
    num_leaves: int,
) -> onnx.ModelProto:
    """One LightGBM quantile booster per alpha, converted and joined into one graph:
    ``quantiles = Clip(TopK-ascending(Concat(q_alpha...)))`` (sorted, so never crossing)."""
    width = x.shape[1]
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    opsets: dict[str, int] = {}
    outputs = []
    for k, alpha in enumerate(alphas):
        booster = lgb.train(
            {
                "objective": "quantile",
                "alpha": alpha,
                "verbose": -1,
                "num_leaves": num_leaves,
                "num_threads": 1,
            },
            lgb.Dataset(x, y),
            num_boost_round=n_trees,
        )
        part = onnxmltools.convert_lightgbm(
            booster, initial_types=[("input", FloatTensorType([None, width]))], target_opset=15
        )
        part = onnx.compose.add_prefix(part, f"q{k}_", rename_inputs=False)
        for node in part.graph.node:
            node.input[:] = ["input" if i == f"q{k}_input" else i for i in node.input]
        nodes.extend(part.graph.node)
        initializers.extend(part.graph.initializer)
        outputs.append(part.graph.output[0].name)
        for opset in part.opset_import:
            opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    opsets[""] = max(opsets.get("", 0), 13)
    initializers.extend(
        [
            helper.make_tensor("k", TensorProto.INT64, [1], [len(alphas)]),
            helper.make_tensor("lo", TensorProto.FLOAT, [], [value_range[0]]),
            helper.make_tensor("hi", TensorProto.FLOAT, [], [value_range[1]]),
        ]
    )
    nodes.extend(
        [
            helper.make_node("Concat", outputs, ["joined"], axis=1),
            helper.make_node(
                "TopK", ["joined", "k"], ["sorted", "order"], axis=1, largest=0, sorted=1
            ),
            helper.make_node("Clip", ["sorted", "lo", "hi"], ["quantiles"]),
        ]
    )
    graph = helper.make_graph(
        nodes,
        "quantile_member",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("quantiles", TensorProto.FLOAT, [None, len(alphas)])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _train_entry(
    x: np.ndarray, seed: int, names: list[str], *, n_trees: int, num_leaves: int
) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    logit = 1.2 * np.nan_to_num(x[:, 0]) - 0.8 * x[:, 1] + 0.4 * seed % 3 * x[:, 2]
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {
        "objective": "binary",
        "verbose": -1,
        "num_leaves": num_leaves,
        "num_threads": 1,
        "seed": seed,
    }
    return lgb.train(params, lgb.Dataset(x, y, feature_name=names), num_boost_round=n_trees)


def build_family(
    root: Path,
    *,
    family: str = "playbook",
    version: str = "v1_0_0",
    seed: int = 0,
    routing: Mapping[str, str] | None = None,
    carried: Mapping[str, str] | None = None,
    rows: int = 1500,
    features: Sequence[str] = tuple(FEATURES),
    n_trees: int = 12,
    num_leaves: int = 7,
    lightgbm_quantiles: bool = False,
) -> FamilyRelease:
    """Train / build every member, write the release and its card under ``root``.

    ``carried``: member name → an earlier version it keeps (its own version on the card).
    ``lightgbm_quantiles``: quantile members are LightGBM quantile boosters reading every
    feature (as the trainer builds them; slower to build) instead of small linear graphs
    reading a subset. ``features`` other than the default need ``lightgbm_quantiles``.
    """
    features = list(features)
    if features != FEATURES and not lightgbm_quantiles:
        raise ValueError("custom features need lightgbm_quantiles=True")
    routing = dict(routing or DEFAULT_ROUTING)
    carried = dict(carried or {})
    directory = family_dir(root, family, version)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(features))).astype(np.float32)
    x[rng.random(rows) < 0.1, len(features) - 1] = np.nan
    members: list[dict[str, Any]] = []

    def write(name: str, model: onnx.ModelProto) -> str:
        body = model.SerializeToString()
        (directory / f"{name}.onnx").write_bytes(body)
        return hashlib.sha256(body).hexdigest()

    for k, cluster in enumerate(("H", "M", "L", None)):
        name = f"entry_{cluster}" if cluster else "entry_pooled"
        names = list(features)
        data = x
        if cluster is None:
            codes = rng.choice([0.0, 1.0, 2.0, np.nan], size=rows).astype(np.float32)
            data = np.hstack([x, codes[:, None]])
            names = [*features, CLUSTER_FEATURE]
        booster = _train_entry(data, seed * 10 + k, names, n_trees=n_trees, num_leaves=num_leaves)
        booster.save_model(str(directory / f"{name}.txt"))
        members.append(
            {
                "name": name,
                "head": "entry",
                "kind": "binary",
                "target": "y_entry",
                "version": carried.get(name, version),
                "file": f"{name}.onnx",
                "booster_file": f"{name}.txt",
                "sha256": write(name, _entry_onnx(booster, len(names))),
                "features": names,
                "nan_allowed": [features[-1], *([CLUSTER_FEATURE] if cluster is None else [])],
                "output": "probabilities",
                "cluster": cluster,
                "metrics": {"test": {"roc_auc": 0.6 + 0.01 * k}},
            }
        )
    for j, head in enumerate(("risk", "rr", "offset")):
        alphas = QUANTILE_ALPHAS[head]
        centre = {"risk": 1.2, "rr": 2.0, "offset": 0.0}[head] + 0.05 * seed
        if lightgbm_quantiles:
            inputs = list(features)
            target = centre + 0.5 * np.nan_to_num(x[:, j]) + rng.normal(size=rows) * 0.3
            model = lightgbm_quantile_onnx(
                x, target, alphas, RANGES[head], n_trees=n_trees, num_leaves=num_leaves
            )
        else:
            inputs = QUANTILE_INPUTS[head]
            weights = [0.3 + 0.1 * (seed + j + i) % 0.5 for i in range(len(inputs))]
            bias = [centre + 0.25 * (i - len(alphas) // 2) for i in range(len(alphas))]
            model = quantile_onnx(weights, bias, RANGES[head])
        members.append(
            {
                "name": head,
                "head": head,
                "kind": "quantile",
                "target": {"risk": "sl_katr", "rr": "rr_target", "offset": "offset_katr"}[head],
                "version": carried.get(head, version),
                "file": f"{head}.onnx",
                "sha256": write(head, model),
                "features": inputs,
                "output": "quantiles",
                "alphas": alphas,
                "served_alpha": SERVED[head],
                "value_range": list(RANGES[head]),
            }
        )
    card = FamilyCard.model_validate(
        {
            "family": family,
            "version": version,
            "training_run_id": f"run-{family}-{version}",
            "created_at": datetime.now(UTC).isoformat(),
            "feature_schema_version": 1,
            "features": features,
            "members": members,
            "entry_routing": routing,
            "metrics": {"entry": {"roc_auc": 0.61}},
        }
    )
    body = card.model_dump_json(indent=2).encode()
    (directory / METRICS_FILE).write_bytes(body)
    return FamilyRelease(
        family,
        version,
        family_uri(family, version),
        directory,
        hashlib.sha256(body).hexdigest(),
        card,
    )


def rows_of(n: int, *, seed: int = 1, nan_every: int = 0) -> list[dict[str, float]]:
    """Request feature maps like the training data (f4 NaN every ``nan_every`` rows)."""
    x = np.random.default_rng(seed).normal(size=(n, len(FEATURES)))
    out = []
    for i, row in enumerate(x):
        features = dict(zip(FEATURES, (float(v) for v in row), strict=True))
        if nan_every and i % nan_every == 0:
            features["f4"] = float("nan")
        out.append(features)
    return out


def card_bytes(release: FamilyRelease) -> bytes:
    """The release's metrics.json as written."""
    return (release.directory / METRICS_FILE).read_bytes()


def rewrite_card(release: FamilyRelease, **changes: Any) -> str:
    """Rewrite metrics.json with top-level changes; the new sha256 (for a new event)."""
    data = json.loads(card_bytes(release))
    data.update(changes)
    body = json.dumps(data).encode()
    (release.directory / METRICS_FILE).write_bytes(body)
    return hashlib.sha256(body).hexdigest()
