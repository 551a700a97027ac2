"""The production release of a family, compared with a candidate on the candidate's test rows.

The registry's margin gate (``not_worse_than_production``) reads the production release's
ROC-AUC on the SAME test block from the candidate's card. A family's entry head is served
by routing (each cluster to its expert or ``entry_pooled``), so production is scored the
way the scorer would answer: every test row by the member production routes its cluster
to, from that member's ONNX file in the release directory the registry's deployments name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from hindsight.common.artifacts import resolve_artifact
from hindsight.common.family import CLUSTER_FEATURE, HEAD_TARGETS, load_family_card
from hindsight.trainer.domain.family import ProductionComparison
from hindsight.trainer.domain.family_frame import FamilyFrame
from hindsight.trainer.domain.metrics import roc_auc
from hindsight.trainer.domain.onnx_export import onnx_predict

__all__ = ["FamilyProduction", "ProductionRelease", "compare_on_test_rows"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProductionRelease:
    """Where the registry says a family's production release lies."""

    version: str
    artifact_uri: str


class FamilyProduction:
    """Finds a family's production release through ``GET {registry}/v1/deployments``."""

    def __init__(self, registry_url: str | None, artifact_root: Path, *, timeout: float = 5.0):
        self.registry_url = registry_url
        self.artifact_root = artifact_root
        self.timeout = timeout

    async def find(self, family: str) -> ProductionRelease | None:
        """The production release of ``family``; None when there is none, or no registry
        answered (then the candidate says it was not compared)."""
        if not self.registry_url:
            return None
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(f"{self.registry_url}/v1/deployments")
                response.raise_for_status()
                deployments = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("registry unreachable, no production comparison: %s", exc)
            return None
        for d in deployments:
            if d.get("model_name") == family and d.get("stage", "production") == "production":
                return ProductionRelease(str(d["version"]), str(d["artifact_uri"]))
        return None

    def compare(
        self,
        production: ProductionRelease,
        frame: FamilyFrame,
        test: npt.NDArray[np.int64],
    ) -> ProductionComparison:
        """:func:`compare_on_test_rows` on the release's directory under the artifact root."""
        try:
            directory = resolve_artifact(self.artifact_root, production.artifact_uri)
        except Exception as exc:  # outside the root, say: not comparable, and why
            return ProductionComparison(production.version, None, f"unreadable: {exc}")
        return compare_on_test_rows(production.version, directory, frame, test)


def compare_on_test_rows(
    version: str, directory: Path, frame: FamilyFrame, test: npt.NDArray[np.int64]
) -> ProductionComparison:
    """The production release's routed entry ROC-AUC on ``frame``'s rows ``test``.

    Not comparable (``roc_auc`` None, the note says why) when its card cannot be read, it
    was trained on another feature list, a member's file is missing, or the rows hold one
    class only.
    """
    try:
        card = load_family_card(directory)
    except (OSError, ValueError) as exc:
        return ProductionComparison(version, None, f"production {version} unreadable: {exc}")
    if list(card.features) != list(frame.feature_names):
        return ProductionComparison(
            version, None, f"production {version} has other features; not comparable"
        )
    columns = {name: frame.x[test, j] for j, name in enumerate(frame.feature_names)}
    columns[CLUSTER_FEATURE] = frame.cluster_codes[test]
    routing = {str(k): v for k, v in card.entry_routing.items()}
    served_by = np.array(
        [routing.get(str(c), "entry_pooled") for c in frame.cluster[test]], dtype=object
    )
    p = np.empty(len(test), dtype=np.float64)
    for name in dict.fromkeys(served_by.tolist()):
        member = card.member(name)
        missing = [] if member is None else [f for f in member.features if f not in columns]
        if member is None or missing:
            return ProductionComparison(
                version, None, f"production {version}: member {name} reads {missing or '?'}"
            )
        mask = served_by == name
        x = np.column_stack([columns[f][mask] for f in member.features])
        try:
            p[mask] = onnx_predict((directory / member.file).read_bytes(), x)
        except Exception as exc:  # a missing or broken graph: not comparable
            return ProductionComparison(
                version, None, f"production {version}: member {name} could not run: {exc}"
            )
    y = frame.targets[HEAD_TARGETS["entry"]][test]
    if len(np.unique(y)) < 2:
        return ProductionComparison(version, None, "the test rows hold one class only")
    return ProductionComparison(
        version, float(roc_auc(y, p)), f"production {version} routed on the same test rows"
    )
