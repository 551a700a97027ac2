"""Writing a version's files atomically under ``models/{model_name}/{version}/``."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from hindsight.common.artifacts import (
    METRICS_FILE,
    MODEL_FILE,
    ONNX_FILE,
    ModelCard,
    artifact_dir,
    artifact_uri,
    sha256_file,
)
from hindsight.trainer.domain.jsonsafe import JsonObject, jsonable
from hindsight.trainer.domain.rows import TrainingRow
from hindsight.trainer.domain.training import TrainingResult, ordered
from hindsight.trainer.snapshot import write_snapshot

__all__ = ["library_versions", "write_artifact"]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the model."""
    import lightgbm
    import numpy
    import onnx
    import onnxmltools
    import onnxruntime
    import sklearn

    return {
        "lightgbm": lightgbm.__version__,
        "onnxmltools": onnxmltools.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnx": onnx.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
    }


def write_artifact(
    root: Path,
    *,
    model_name: str,
    version: str,
    run_id: str,
    created_at: datetime,
    feature_schema_version: int,
    result: TrainingResult,
    extra: JsonObject,
    rows: Sequence[TrainingRow] | None = None,
) -> tuple[str, str, ModelCard]:
    """Write model.onnx, model.txt, metrics.json (and, given the run's ``rows``, their
    Parquet snapshot, its hash in ``training_snapshot``) into a temp dir, then rename
    into place.

    Returns (artifact_uri, sha256 of model.onnx, the card).
    """
    final = artifact_dir(root, model_name, version)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        (tmp / ONNX_FILE).write_bytes(result.onnx_bytes)
        result.booster.save_model(str(tmp / MODEL_FILE))
        sha = sha256_file(tmp / ONNX_FILE)
        snapshot: JsonObject = {}
        if rows is not None:
            written = write_snapshot(tmp, ordered(rows), result.row_blocks, result.feature_names)
            snapshot = {"training_snapshot": written.to_dict()}
        card = ModelCard.model_validate(
            {
                "model_name": model_name,
                "version": version,
                "training_run_id": run_id,
                "created_at": created_at,
                "feature_names": result.feature_names,
                "feature_schema_version": feature_schema_version,
                "nan_allowed": result.nan_allowed,
                "onnx_sha256": sha,
                "metrics": jsonable(result.metrics),
                "interval_bins": result.interval_bins,
                "data_time_range": result.data_time_range,
                "row_counts": result.row_counts,
                "calibration": jsonable(result.calibrator.to_dict()),
                "reference_distributions": jsonable(result.reference),
                "parity": jsonable(result.parity),
                "library_versions": library_versions(),
                "timings_s": result.timings_s,
                "onnx": {
                    "input": "input",
                    "output": "probabilities",
                    "dtype": "float32",
                    "positive_class_column": 1,
                },
                **jsonable(extra),
                **snapshot,
            }
        )
        (tmp / METRICS_FILE).write_text(
            json.dumps(card.model_dump(mode="json"), indent=1, allow_nan=False)
        )
        for path in tmp.rglob("*"):
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        os.rename(tmp, final)  # atomic on one filesystem; fails if the version exists
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return artifact_uri(model_name, version), sha, card
