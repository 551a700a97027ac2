"""Family releases for the registry's tests: a valid FamilyCard and tiny hand-built ONNX
members (the registry hashes them, it never runs them; they still follow the member
contract: input ``input`` [N, features], output ``probabilities`` [N, 2] or ``quantiles``
[N, alphas], ascending)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hindsight.common.family import FamilyCard, family_dir

FAMILY = "playbook"
FEATURES = ["f1", "f2", "f3"]
ALPHAS = {"risk": [0.6, 0.7, 0.8], "rr": [0.6], "offset": [0.5]}
SERVED = {"risk": 0.7, "rr": 0.6, "offset": 0.5}
TARGETS = {"risk": "sl_katr", "rr": "rr_target", "offset": "offset_katr"}
ENTRIES = ("entry_H", "entry_M", "entry_L", "entry_pooled")


def _graph(name: str, n_features: int, output: str, bias: list[float], softmax: bool) -> bytes:
    """``output = [softmax](input @ W + bias)``, W small and fixed: a valid member graph."""
    width = len(bias)
    rng = np.random.default_rng(len(name))
    weights = numpy_helper.from_array(
        (rng.normal(0, 0.01, (n_features, width))).astype(np.float32), "W"
    )
    offsets = numpy_helper.from_array(np.asarray(bias, dtype=np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["input", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["logits" if softmax else output]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], [output], axis=1))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [None, width])],
        initializer=[weights, offsets],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _write(directory: Path, name: str, data: bytes) -> str:
    (directory / f"{name}.onnx").write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def make_family(
    root: Path,
    version: str,
    *,
    family: str = FAMILY,
    entry_auc: dict[str, float] | None = None,
    production: dict[str, Any] | None = None,
    roc_auc: float = 0.66,
) -> str:
    """Write ``families/{family}/{version}/`` (7 members + metrics.json); the card's sha256.

    ``entry_auc`` overrides one entry member's test ROC-AUC (0.66 otherwise);
    ``production`` is the release's comparison with production on the same block.
    """
    directory = family_dir(root, family, version)
    directory.mkdir(parents=True)
    aucs = entry_auc or {}
    members: list[dict[str, Any]] = []
    for name in ENTRIES:
        features = [*FEATURES, "liquidity_cluster_code"] if name == "entry_pooled" else FEATURES
        sha = _write(directory, name, _graph(name, len(features), "probabilities", [0, 0], True))
        members.append(
            {
                "name": name,
                "head": "entry",
                "kind": "binary",
                "target": "y_entry",
                "version": version,
                "file": f"{name}.onnx",
                "sha256": sha,
                "features": features,
                "output": "probabilities",
                "cluster": None if name == "entry_pooled" else name[-1],
                "calibration": {"method": "platt", "clip": [1e-4, 1 - 1e-4]},
                "metrics": {
                    "test": {
                        "roc_auc": aucs.get(name, 0.66),
                        "ece": 0.03,
                        "brier": 0.22,
                        "rows": 900,
                        "p_min": 0.04,
                        "p_max": 0.93,
                    }
                },
            }
        )
    for head, alphas in ALPHAS.items():
        bias = [0.5 + 0.25 * i for i in range(len(alphas))]
        sha = _write(directory, head, _graph(head, len(FEATURES), "quantiles", bias, False))
        members.append(
            {
                "name": head,
                "head": head,
                "kind": "quantile",
                "target": TARGETS[head],
                "version": version,
                "file": f"{head}.onnx",
                "sha256": sha,
                "features": FEATURES,
                "output": "quantiles",
                "alphas": alphas,
                "served_alpha": SERVED[head],
                "value_range": [-3.0, 10.0],
                "metrics": {
                    "test": {
                        "rows": 900,
                        "coverage": {str(a): a + 0.01 for a in alphas},
                        "pinball": {str(a): 0.31 for a in alphas},
                        "baseline_pinball": {str(a): 0.38 for a in alphas},
                    }
                },
            }
        )
    card = FamilyCard.model_validate(
        {
            "family": family,
            "version": version,
            "training_run_id": f"run-{family}-{version}",
            "created_at": datetime.now(UTC),
            "feature_schema_version": 1,
            "features": FEATURES,
            "members": members,
            "entry_routing": {"H": "entry_H", "M": "entry_M", "L": "entry_pooled"},
            "metrics": {
                "test": {"roc_auc": roc_auc, "ece": 0.03, "brier": 0.22, "rows": 2700},
                "production": production,
                "recommendation": "PROMOTE",
            },
        }
    )
    text = json.dumps(card.model_dump(mode="json"))
    (directory / "metrics.json").write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def family_completed(version: str, sha256: str, *, family: str = FAMILY) -> dict[str, Any]:
    """The training.completed the trainer publishes for a family release."""
    return {
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "test",
        "training_run_id": f"run-{family}-{version}",
        "model_name": family,
        "status": "completed",
        "version": version,
        "artifact_uri": f"families/{family}/{version}",
        "sha256": sha256,
        "metrics": {"roc_auc": 0.66},
        "dataset_size": 4500,
    }
