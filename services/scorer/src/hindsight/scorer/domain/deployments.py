"""Deployment state: which versions of which models should be loaded, and which serves.

Folded from ``model.deployed`` events (JetStream replay, then live), or read from the
registry or the local cache. Pure data: the scorer's reconciler loads what it says.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["Deployment", "DeploymentState", "Stage"]

Stage = Literal["production", "canary", "shadow", "retired", "previous"]
"""``previous``: a replaced production version kept loaded until its ``retired`` event."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """One version of one model at one stage, with its artifact."""

    model_name: str
    version: str
    stage: Stage
    artifact_uri: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        """The registry's ``/v1/deployments`` row shape (also the cache file's)."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "stage": self.stage,
            "artifact_uri": self.artifact_uri,
            "sha256": self.sha256,
        }


@dataclass(slots=True)
class DeploymentState:
    """Per model: the production version and the other loaded versions."""

    production: dict[str, Deployment] = field(default_factory=dict)
    others: dict[tuple[str, str], Deployment] = field(default_factory=dict)

    def apply(self, deployment: Deployment) -> None:
        """Fold one deployment (in publication order) into the state."""
        name, version = deployment.model_name, deployment.version
        key = (name, version)
        if deployment.stage == "production":
            old = self.production.get(name)
            if old is not None and old.version != version:
                # Keep the replaced version loaded until its retired event: pinned calls
                # in flight still find it, and a lost retired event costs only memory.
                self.others[(name, old.version)] = replace(old, stage="previous")
            self.others.pop(key, None)
            self.production[name] = deployment
        elif deployment.stage == "retired":
            current = self.production.get(name)
            if current is not None and current.version == version:
                return  # never unload what serves
            self.others.pop(key, None)
        else:
            current = self.production.get(name)
            if current is not None and current.version == version:
                return  # already production; a stale canary event must not demote it
            self.others[key] = deployment

    @classmethod
    def fold(cls, deployments: Iterable[Deployment]) -> DeploymentState:
        """The state after applying ``deployments`` in order."""
        state = cls()
        for deployment in deployments:
            state.apply(deployment)
        return state

    def wanted(self) -> list[Deployment]:
        """Every version that should be loaded: productions first."""
        return [*self.production.values(), *self.others.values()]

    def is_empty(self) -> bool:
        """True when nothing is deployed."""
        return not self.production and not self.others
