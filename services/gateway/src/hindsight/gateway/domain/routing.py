"""The routing table: the registry's ``model.deployed`` / ``ab.completed`` folded per model.

* ``production`` sets the model's production version and ends any experiment whose
  candidate it is (the candidate was promoted);
* ``canary`` (canary and A/B: the registry publishes both with ``traffic``) starts a
  splitting experiment: the candidate gets ``traffic[version]`` of the requests;
* ``shadow`` starts a shadow experiment: the version is scored off the request path;
* ``retired`` ends any experiment whose candidate or shadow version it is (the scorers
  unload it);
* ``ab.completed`` ends the experiment (traffic returns to production).

Sticky assignment: bucket = first 8 bytes of sha256(f"{experiment_id}:{signal_id}") as a
big-endian integer / 2**64; the candidate arm when bucket < candidate weight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ARM_CANDIDATE",
    "ARM_CONTROL",
    "ARM_SHADOW",
    "Completed",
    "Deployed",
    "Experiment",
    "ExperimentRoute",
    "ModelRoutes",
    "Route",
    "RoutingTable",
    "bucket",
]

ARM_CONTROL = "control"
ARM_CANDIDATE = "candidate"
ARM_SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class Deployed:
    """The routing view of a ``model.deployed`` event."""

    model_name: str
    version: str
    stage: str
    experiment_id: str | None = None
    traffic: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """The routing view of an ``ab.completed`` event."""

    experiment_id: str
    model_name: str
    decision: str


@dataclass(frozen=True, slots=True)
class Experiment:
    """One running experiment of a model."""

    experiment_id: str
    kind: Literal["split", "shadow"]
    version: str
    weight: float = 0.0
    """Share of the requests the candidate answers (split only), in [0, 1]."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: a pinned version (or the scorer's default), its arm."""

    model_version: str | None = None
    arm: str = ""
    experiment_id: str | None = None
    shadows: tuple[Experiment, ...] = ()


NO_EXPERIMENT = Route()


@dataclass(frozen=True, slots=True)
class ExperimentRoute:
    """A running experiment as ``GET /v1/routes`` shows it."""

    experiment_id: str
    kind: Literal["split", "shadow"]
    version: str
    candidate_weight: float | None
    """The candidate's share of the requests (split experiments; None for shadows)."""


@dataclass(frozen=True, slots=True)
class ModelRoutes:
    """A model's production version and running experiments, in start order."""

    model_name: str
    production_version: str | None
    experiments: tuple[ExperimentRoute, ...]


def bucket(experiment_id: str, signal_id: str) -> float:
    """The sticky bucket of a signal in an experiment, in [0, 1)."""
    digest = hashlib.sha256(f"{experiment_id}:{signal_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class _ModelRoutes:
    production: str | None = None
    experiments: dict[str, Experiment] = field(default_factory=dict)
    """experiment_id → experiment, in start order."""


class RoutingTable:
    """Per model: the production version and the running experiments."""

    def __init__(self) -> None:
        self._models: dict[str, _ModelRoutes] = {}
        self.events_applied = 0

    def apply(self, event: Deployed | Completed) -> None:
        """Fold one event in (idempotent: a replayed event changes nothing twice)."""
        self.events_applied += 1
        if isinstance(event, Completed):
            self._end(event.model_name, lambda e: e.experiment_id == event.experiment_id)
            for routes in self._models.values():  # model_name mismatch: still drop it
                routes.experiments.pop(event.experiment_id, None)
            return
        routes = self._models.setdefault(event.model_name, _ModelRoutes())
        version = event.version
        if event.stage == "production":
            routes.production = version
            self._end(event.model_name, lambda e: e.version == version)
        elif event.stage == "retired":
            if routes.production == version:
                routes.production = None
            self._end(event.model_name, lambda e: e.version == version)
        elif event.stage == "canary" and event.experiment_id:
            routes.experiments.pop(event.experiment_id, None)
            routes.experiments[event.experiment_id] = Experiment(
                event.experiment_id, "split", version, _candidate_weight(event)
            )
        elif event.stage == "shadow" and event.experiment_id:
            routes.experiments.pop(event.experiment_id, None)
            routes.experiments[event.experiment_id] = Experiment(
                event.experiment_id, "shadow", version
            )

    def route(self, model_name: str, signal_id: str) -> Route:
        """The arm of one request (sticky per experiment and signal_id)."""
        routes = self._models.get(model_name)
        if routes is None or not routes.experiments:
            return NO_EXPERIMENT
        split: Experiment | None = None
        shadows: list[Experiment] = []
        for experiment in routes.experiments.values():
            if experiment.kind == "shadow":
                shadows.append(experiment)
            else:
                split = experiment  # the latest started split experiment routes
        if split is None:
            return Route(shadows=tuple(shadows))
        if bucket(split.experiment_id, signal_id) < split.weight:
            return Route(split.version, ARM_CANDIDATE, split.experiment_id, tuple(shadows))
        return Route(None, ARM_CONTROL, split.experiment_id, tuple(shadows))

    def production(self, model_name: str) -> str | None:
        """The production version of a model, when known."""
        routes = self._models.get(model_name)
        return routes.production if routes else None

    def snapshot(self) -> list[ModelRoutes]:
        """The table for ``GET /v1/routes``, by model name."""
        return [
            ModelRoutes(
                model_name=name,
                production_version=routes.production,
                experiments=tuple(
                    ExperimentRoute(
                        experiment_id=e.experiment_id,
                        kind=e.kind,
                        version=e.version,
                        candidate_weight=e.weight if e.kind == "split" else None,
                    )
                    for e in routes.experiments.values()
                ),
            )
            for name, routes in sorted(self._models.items())
        ]

    def _end(self, model_name: str, match: Callable[[Experiment], bool]) -> None:
        routes = self._models.get(model_name)
        if routes is None:
            return
        for experiment_id in [k for k, e in routes.experiments.items() if match(e)]:
            del routes.experiments[experiment_id]


def _candidate_weight(event: Deployed) -> float:
    traffic = event.traffic or {}
    total = sum(w for w in traffic.values() if w > 0)
    if total <= 0:
        return 0.0
    return min(1.0, max(0.0, traffic.get(event.version, 0.0) / total))
