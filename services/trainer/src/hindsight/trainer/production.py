"""The current production model, for comparison on the candidate's test block."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from hindsight.common.artifacts import ONNX_FILE, load_card, resolve_artifact
from hindsight.trainer.domain.onnx_export import onnx_predict
from hindsight.trainer.domain.training import BaselinePredictor, FloatArray

__all__ = ["ACCEPTED_STAGES", "ProductionBaseline", "RegistryProduction"]

logger = logging.getLogger(__name__)
# A version in one of these stages was accepted even if its gates failed (a forced promotion).
ACCEPTED_STAGES = frozenset({"production", "staging"})


@dataclass(frozen=True, slots=True)
class ProductionBaseline:
    """A predictor (None when there is nothing to compare) and a note on why."""

    predict: BaselinePredictor | None
    note: str | None
    version: str | None = None


class RegistryProduction:
    """Finds the production version through ``GET {registry}/v1/deployments``."""

    def __init__(self, registry_url: str | None, artifact_root: Path, *, timeout: float = 5.0):
        self.registry_url = registry_url
        self.artifact_root = artifact_root
        self.timeout = timeout

    async def accepted_versions(self, model_name: str) -> frozenset[str] | None:
        """Versions of ``model_name`` the registry accepted: gates passed, or production /
        staging. None when there is no registry to ask or it did not answer."""
        if not self.registry_url:
            return None
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(f"{self.registry_url}/v1/models/{model_name}/versions")
                if response.status_code == 404:  # the registry knows no version of it yet
                    return frozenset()
                response.raise_for_status()
                versions = response.json()
            return frozenset(
                str(v["version"])
                for v in versions
                if v.get("gates_passed") is True or v.get("stage") in ACCEPTED_STAGES
            )
        except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
            logger.warning("registry unreachable, cannot tell accepted versions: %s", exc)
            return None

    async def load(self, model_name: str, feature_names: Sequence[str]) -> ProductionBaseline:
        """The production model of ``model_name`` when its features match, else a note."""
        if not self.registry_url:
            return ProductionBaseline(None, None)
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(f"{self.registry_url}/v1/deployments")
                response.raise_for_status()
                deployments = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("registry unreachable, no production comparison: %s", exc)
            return ProductionBaseline(None, f"registry unreachable: {exc}")
        mine = [
            d
            for d in deployments
            if d.get("model_name") == model_name and d.get("stage", "production") == "production"
        ]
        if not mine:
            return ProductionBaseline(None, None)
        deployment = mine[0]
        version = str(deployment.get("version"))
        try:
            directory = resolve_artifact(self.artifact_root, str(deployment["artifact_uri"]))
            card = load_card(directory)
            model_bytes = (directory / ONNX_FILE).read_bytes()
        except Exception as exc:
            return ProductionBaseline(None, f"production {version} unreadable: {exc}", version)
        if list(card.feature_names) != list(feature_names):
            return ProductionBaseline(
                None, f"production {version} has other features; not comparable", version
            )

        def predict(x: FloatArray) -> FloatArray:
            return np.asarray(onnx_predict(model_bytes, x), dtype=np.float64)

        return ProductionBaseline(predict, f"production version {version}", version)
