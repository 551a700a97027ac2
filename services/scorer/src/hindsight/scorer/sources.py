"""Where deployments come from when JetStream cannot say: the registry and a local cache."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import httpx

from hindsight.scorer.domain.deployments import Deployment, Stage

__all__ = ["DeploymentCache", "fetch_registry_deployments", "parse_deployments"]

logger = logging.getLogger(__name__)
_STAGES = frozenset(get_args(Stage))


def parse_deployments(rows: Any) -> list[Deployment]:
    """Rows shaped like the registry's ``/v1/deployments``; malformed rows are skipped."""
    result: list[Deployment] = []
    if not isinstance(rows, list):
        raise ValueError("expected a JSON list of deployments")
    for row in rows:
        try:
            stage = row.get("stage", "production")
            if stage not in _STAGES:
                raise ValueError(f"unknown stage {stage!r}")
            result.append(
                Deployment(
                    model_name=str(row["model_name"]),
                    version=str(row["version"]),
                    stage=stage,
                    artifact_uri=str(row["artifact_uri"]),
                    sha256=str(row["sha256"]).lower(),
                )
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            logger.warning("skipping a malformed deployment row: %s", exc)
    return result


async def fetch_registry_deployments(base_url: str, *, timeout: float) -> list[Deployment]:
    """``GET {base_url}/v1/deployments``; raises ``httpx.HTTPError`` / ``ValueError``."""
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        response = await client.get("/v1/deployments")
        response.raise_for_status()
        return parse_deployments(response.json())


class DeploymentCache:
    """The last served deployments, in a JSON file rewritten atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Deployment] | None:
        """The cached deployments, or None when there is no readable cache."""
        try:
            data = json.loads(self.path.read_text())
            return parse_deployments(data["deployments"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable deployment cache %s: %s", self.path, exc)
            return None

    def save(self, deployments: list[Deployment]) -> None:
        """Write the served deployments (tmp file + rename, so readers never see half)."""
        body = {
            "saved_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "deployments": [d.to_json() for d in deployments],
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(body, indent=2))
            os.replace(tmp, self.path)
        except OSError as exc:  # a read-only volume must not stop scoring
            logger.warning("could not write deployment cache %s: %s", self.path, exc)
