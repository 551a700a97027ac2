"""Loading one deployment: verify the artifact, open the ONNX session, warm up.

CPU- and disk-heavy; :class:`ArtifactLoader.load` is meant to run in a worker thread
(``asyncio.to_thread``). Anything wrong raises :class:`ArtifactRefusedError` with a
short machine-readable ``reason`` for the metric.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from hindsight.common.artifacts import (
    MODEL_FILE,
    ONNX_FILE,
    ModelCard,
    load_card,
    resolve_artifact,
    sha256_file,
)
from hindsight.common.errors import HindsightError
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.drift import DriftMonitor
from hindsight.scorer.domain.features import Matrix
from hindsight.scorer.domain.models import LoadedModel

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "ArtifactLoader", "ArtifactRefusedError", "OrtPredictor"]

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


class ArtifactRefusedError(HindsightError):
    """The artifact cannot be served; the old version keeps serving."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OrtPredictor:
    """ONNX Runtime for probabilities, the LightGBM booster for TreeSHAP contributions."""

    def __init__(self, session: ort.InferenceSession, booster: lgb.Booster) -> None:
        self._session = session
        self._booster = booster
        self._outputs = [OUTPUT_NAME]

    def predict(self, matrix: Matrix) -> npt.NDArray[np.float32]:
        """Column 1 of ``probabilities``: the calibrated P(win)."""
        out: npt.NDArray[np.float32] = self._session.run(self._outputs, {INPUT_NAME: matrix})[0]
        return out[:, 1]

    def contributions(self, matrix: Matrix) -> npt.NDArray[np.float64]:
        """``Booster.predict(pred_contrib=True)``: log-odds per feature, then the bias."""
        result = self._booster.predict(matrix.astype(np.float64), pred_contrib=True, num_threads=1)
        return np.asarray(result, dtype=np.float64)


def session_options() -> ort.SessionOptions:
    """One thread per session, sequential, all graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class ArtifactLoader:
    """Turns a :class:`Deployment` into a verified, warmed-up :class:`LoadedModel`."""

    def __init__(
        self,
        artifact_root: Path,
        *,
        warmup_runs: int = 3,
        drift_window: int | None = 2000,
        drift_min_rows: int = 500,
    ) -> None:
        self.artifact_root = artifact_root
        self.warmup_runs = warmup_runs
        self.drift_window = drift_window
        """Rows of the drift window per version; None turns drift monitoring off."""
        self.drift_min_rows = drift_min_rows

    def load(self, deployment: Deployment) -> LoadedModel:
        """Verify and load; raises :class:`ArtifactRefusedError` when it must not serve."""
        try:
            directory = resolve_artifact(self.artifact_root, deployment.artifact_uri)
        except HindsightError as exc:
            raise ArtifactRefusedError(str(exc), reason="outside_root") from exc
        onnx_path = directory / ONNX_FILE
        try:
            card = load_card(directory)
            actual = sha256_file(onnx_path)
        except (OSError, ValueError) as exc:
            raise ArtifactRefusedError(
                f"cannot read artifact {deployment.artifact_uri}: {exc}", reason="unreadable"
            ) from exc
        if actual != deployment.sha256.lower() or actual != card.onnx_sha256.lower():
            raise ArtifactRefusedError(
                f"sha256 mismatch for {deployment.artifact_uri}: file {actual}, "
                f"event {deployment.sha256}, card {card.onnx_sha256}",
                reason="sha256_mismatch",
            )
        if card.model_name != deployment.model_name or card.version != deployment.version:
            raise ArtifactRefusedError(
                f"card names {card.model_name}/{card.version}, "
                f"event {deployment.model_name}/{deployment.version}",
                reason="card_mismatch",
            )
        session = self._session(onnx_path, card)
        try:
            booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        except (OSError, lgb.basic.LightGBMError) as exc:
            raise ArtifactRefusedError(
                f"cannot load {MODEL_FILE}: {exc}", reason="booster"
            ) from exc
        if booster.num_feature() != len(card.feature_names):
            raise ArtifactRefusedError(
                f"{MODEL_FILE} has {booster.num_feature()} features, card has "
                f"{len(card.feature_names)}",
                reason="signature",
            )
        predictor = OrtPredictor(session, booster)
        model = LoadedModel.build(
            deployment, card, predictor, loaded_at=datetime.now(UTC), drift=self._drift(card)
        )
        self._warm_up(model)
        return model

    def _drift(self, card: ModelCard) -> DriftMonitor | None:
        if self.drift_window is None:
            return None
        monitor = DriftMonitor.from_card(
            card.feature_names,
            card.model_extra,
            window=self.drift_window,
            min_rows=self.drift_min_rows,
        )
        if monitor is None:
            logger.info(
                "%s/%s: no reference_distributions in its card; drift monitoring off",
                card.model_name,
                card.version,
            )
        return monitor

    @staticmethod
    def _session(path: Path, card: ModelCard) -> ort.InferenceSession:
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ArtifactRefusedError(
                f"ONNX Runtime refused {path.name}: {exc}", reason="onnx"
            ) from exc
        inputs = session.get_inputs()
        width = len(card.feature_names)
        if (
            len(inputs) != 1
            or inputs[0].name != INPUT_NAME
            or inputs[0].type != "tensor(float)"
            or len(inputs[0].shape) != 2
            or not _dim_fits(inputs[0].shape[1], width)
        ):
            found = [(i.name, i.type, i.shape) for i in inputs]
            raise ArtifactRefusedError(
                f"expected one float input {INPUT_NAME!r} [N, {width}], found {found}",
                reason="signature",
            )
        outputs = {o.name: o for o in session.get_outputs()}
        out = outputs.get(OUTPUT_NAME)
        if (
            out is None
            or out.type != "tensor(float)"
            or len(out.shape) != 2
            or not _dim_fits(out.shape[1], 2)
        ):
            raise ArtifactRefusedError(
                f"expected a float output {OUTPUT_NAME!r} [N, 2], found "
                f"{[(o.name, o.type, o.shape) for o in outputs.values()]}",
                reason="signature",
            )
        return session

    def _warm_up(self, model: LoadedModel) -> None:
        row = np.zeros((1, model.features.width), dtype=np.float32)
        try:
            for _ in range(max(1, self.warmup_runs)):
                p = model.predictor.predict(row)
            model.predictor.contributions(row)
        except Exception as exc:  # a graph that loads but cannot run
            raise ArtifactRefusedError(f"warm-up failed: {exc}", reason="warmup") from exc
        if p.shape != (1,) or not 0.0 <= float(p[0]) <= 1.0:
            raise ArtifactRefusedError(
                f"warm-up gave {p!r}, not one probability per row", reason="warmup"
            )


def _dim_fits(dim: object, expected: int) -> bool:
    # A symbolic or unknown dimension (None, "N") is checked by the warm-up run instead.
    return not isinstance(dim, int) or dim == expected
