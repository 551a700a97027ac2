"""Model artifacts: where they live, how they are addressed, what ``metrics.json`` holds.

Layout under ``HINDSIGHT_ARTIFACT_ROOT``: ``models/{model_name}/{version}/`` with
``model.onnx`` (calibrated probability, zipmap off), ``model.txt`` (LightGBM, for
contributions) and ``metrics.json`` (a :class:`ModelCard`). Events carry the artifact
as ``artifact_uri`` = ``models/{model_name}/{version}`` (relative to the root) and
``sha256`` = the sha256 of ``model.onnx``. Every path read from an event is confined to
the artifact root.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hindsight.common.errors import InvalidInputError

__all__ = [
    "METRICS_FILE",
    "MODEL_FILE",
    "ONNX_FILE",
    "P_MIN",
    "IntervalBin",
    "ModelCard",
    "artifact_dir",
    "artifact_uri",
    "load_card",
    "resolve_artifact",
    "sha256_file",
    "validate_name",
]

ONNX_FILE = "model.onnx"
MODEL_FILE = "model.txt"
METRICS_FILE = "metrics.json"
P_MIN = 1e-4
"""A served probability lies in ``[P_MIN, 1 - P_MIN]``: no model answers a certainty (the
trainer clips inside the ONNX graph; the scorer clips again for artifacts made before)."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_name(value: str, *, field: str) -> str:
    """A model name or version usable as one path segment, or InvalidInputError."""
    if not _NAME_RE.match(value) or value in {".", ".."}:
        raise InvalidInputError(
            "must be 1-128 characters of letters, digits, '.', '_' or '-'", field=field
        )
    return value


def artifact_uri(model_name: str, version: str) -> str:
    """The ``artifact_uri`` of a version, relative to the artifact root."""
    validate_name(model_name, field="model_name")
    validate_name(version, field="version")
    return f"models/{model_name}/{version}"


def artifact_dir(root: Path, model_name: str, version: str) -> Path:
    """The directory of one version's files."""
    return root / artifact_uri(model_name, version)


def resolve_artifact(root: Path, uri: str) -> Path:
    """The directory ``uri`` names, refused unless it lies inside ``root``."""
    raw = uri.removeprefix("file://")
    candidate = Path(raw) if Path(raw).is_absolute() else root / raw
    resolved_root = root.resolve()
    resolved = candidate.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise InvalidInputError(f"{uri!r} is outside the artifact root", field="artifact_uri")
    return resolved


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class IntervalBin(BaseModel):
    """Validation rows whose calibrated p fell in [lo, hi): the interval's sample size."""

    lo: float
    hi: float
    n: int = Field(ge=0)
    positives: int = Field(ge=0)


class ModelCard(BaseModel):
    """``metrics.json``: what a scorer and the registry need, plus everything else kept."""

    model_config = ConfigDict(extra="allow")

    model_name: str
    version: str
    training_run_id: str
    created_at: datetime
    feature_names: list[str] = Field(min_length=1)
    feature_schema_version: int
    nan_allowed: list[str] = Field(
        default_factory=list,
        description="Features that may be NaN/missing at scoring time (seen missing in training).",
    )
    onnx_sha256: str
    metrics: dict[str, Any] = Field(default_factory=dict)
    interval_bins: list[IntervalBin] = Field(default_factory=list)


def load_card(directory: Path) -> ModelCard:
    """Read and validate ``metrics.json`` of one artifact directory."""
    return ModelCard.model_validate_json((directory / METRICS_FILE).read_bytes())
