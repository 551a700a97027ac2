"""Makes the loaded models and family releases follow the deployment state.

Loads what is wanted and not loaded (in a worker thread), swaps it in, unloads what is
no longer wanted (never the version that serves), and saves what serves to the cache.
A refused artifact is logged and counted and leaves the previous version serving.
A deployment whose ``artifact_uri`` starts with ``families/`` is a family release: it
goes to the family track (its own loader and store), with exactly the same rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar

from prometheus_client import Gauge

from hindsight.scorer.domain.deployments import Deployment, DeploymentState, Stage
from hindsight.scorer.domain.families import FamilyStore, LoadedFamily
from hindsight.scorer.domain.models import LoadedModel, ModelStore
from hindsight.scorer.family_loader import is_family_uri
from hindsight.scorer.loader import ArtifactRefusedError
from hindsight.scorer.metrics import FAMILIES_LOADED, LOAD_FAILURES, MODELS_LOADED
from hindsight.scorer.sources import DeploymentCache

__all__ = ["FamilyLoading", "Loader", "Reconciler", "Track"]

logger = logging.getLogger(__name__)


class Loader(Protocol):
    """Builds a loaded model from a deployment (blocking; run in a thread)."""

    def load(self, deployment: Deployment) -> LoadedModel: ...


class FamilyLoading(Protocol):
    """Builds a loaded family release from a deployment (blocking; run in a thread)."""

    def load(self, deployment: Deployment) -> LoadedFamily: ...


class _Loaded(Protocol):
    @property
    def deployment(self) -> Deployment: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    def with_stage(self, stage: Stage) -> Self: ...


T = TypeVar("T", bound=_Loaded)


class _Store(Protocol[T]):
    def get(self, name: str, version: str) -> T | None: ...
    def default_version(self, name: str) -> str | None: ...
    def install(self, item: T, *, serve: bool) -> None: ...
    def remove(self, name: str, version: str) -> bool: ...
    def loaded(self) -> list[T]: ...
    def served(self) -> list[Deployment]: ...


T_co = TypeVar("T_co", covariant=True)


class _Loads(Protocol[T_co]):
    def load(self, deployment: Deployment) -> T_co: ...


@dataclass(frozen=True, slots=True)
class Track(Generic[T]):
    """One kind of deployment: where it is loaded from, where it is kept, its gauge."""

    store: _Store[T]
    loader: _Loads[T]
    gauge: Gauge


class Reconciler:
    """Owns the wanted :class:`DeploymentState` and applies it to the :class:`ModelStore`."""

    def __init__(
        self,
        store: ModelStore,
        loader: Loader,
        cache: DeploymentCache,
        *,
        families: FamilyStore | None = None,
        family_loader: FamilyLoading | None = None,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.cache = cache
        self._models: Track[LoadedModel] = Track(store, loader, MODELS_LOADED)
        self._families: Track[LoadedFamily] | None = (
            Track(families, family_loader, FAMILIES_LOADED)
            if families is not None and family_loader is not None
            else None
        )
        self.state = DeploymentState()
        self.source = "none"
        self._lock = asyncio.Lock()
        self._refused: set[tuple[str, str, str]] = set()
        self._last_good: dict[str, Deployment] = {}
        self._on_change = on_change

    def remember_last_good(self, deployments: list[Deployment]) -> None:
        """Productions that served before (the cache): used when the wanted one is refused."""
        self._last_good = {d.model_name: d for d in deployments if d.stage == "production"}

    async def replace_state(
        self, deployments: list[Deployment], *, source: str, fallback: bool = False
    ) -> None:
        """Adopt a whole new state (a replay, the registry, the cache) and apply it.

        A ``fallback`` source (registry, cache) never overrides a JetStream replay.
        """
        async with self._lock:
            if fallback and self.source == "jetstream":
                logger.info("ignoring %s deployments: JetStream already replayed", source)
                return
            self.state = DeploymentState.fold(deployments)
            self.source = source
            self._refused.clear()
            logger.info(
                "deployment state from %s: %s",
                source,
                [f"{d.model_name}/{d.version}:{d.stage}" for d in self.state.wanted()],
            )
            await self._reconcile()

    async def apply(self, deployment: Deployment) -> None:
        """Apply one live ``model.deployed``."""
        async with self._lock:
            self._refused.discard((deployment.model_name, deployment.version, deployment.sha256))
            self.state.apply(deployment)
            logger.info(
                "model.deployed %s/%s -> %s",
                deployment.model_name,
                deployment.version,
                deployment.stage,
            )
            await self._reconcile()

    def _tracks(self) -> list[Track[LoadedModel] | Track[LoadedFamily]]:
        families = self._families
        return [self._models] if families is None else [self._models, families]

    def _track(self, deployment: Deployment) -> Track[LoadedModel] | Track[LoadedFamily]:
        families = self._families
        if families is not None and is_family_uri(deployment.artifact_uri):
            return families
        return self._models

    def _served(self) -> list[Deployment]:
        return [d for track in self._tracks() for d in track.store.served()]

    async def _load(self, track: Track[T], deployment: Deployment) -> T | None:
        key = (deployment.model_name, deployment.version, deployment.sha256)
        if key in self._refused:
            return None
        try:
            return await asyncio.to_thread(track.loader.load, deployment)
        except ArtifactRefusedError as exc:
            reason = exc.reason
            message = exc.message
        except Exception as exc:  # a broken artifact must never take the scorer down
            reason, message = "error", f"{type(exc).__name__}: {exc}"
        self._refused.add(key)
        LOAD_FAILURES.labels(deployment.model_name, reason).inc()
        logger.error(
            "refused %s/%s (%s): %s; the serving version is unchanged",
            deployment.model_name,
            deployment.version,
            reason,
            message,
            extra={"model": deployment.model_name, "version": deployment.version, "reason": reason},
        )
        return None

    async def _reconcile(self) -> None:
        before = self._served()
        for wanted in self.state.wanted():
            families = self._families
            if families is not None and self._track(wanted) is families:
                await self._reconcile_one(families, wanted)
            else:
                await self._reconcile_one(self._models, wanted)
        for track in self._tracks():
            keep = {
                (d.model_name, d.version) for d in self.state.wanted() if self._track(d) is track
            }
            for item in track.store.loaded():
                if (item.name, item.version) not in keep and track.store.remove(
                    item.name, item.version
                ):
                    logger.info("unloaded %s/%s", item.name, item.version)
        after = self._served()
        if after != before:
            await self._publish_state(after)

    async def _reconcile_one(self, track: Track[T], wanted: Deployment) -> None:
        store = track.store
        serve = wanted.stage == "production"
        current = store.get(wanted.model_name, wanted.version)
        if current is None or current.deployment.sha256 != wanted.sha256:
            loaded = await self._load(track, wanted)
            if loaded is None:
                if serve:
                    await self._fall_back(track, wanted)
                return
            current = loaded
        elif current.deployment.stage == wanted.stage and not (
            serve and store.default_version(wanted.model_name) != wanted.version
        ):
            return
        store.install(current.with_stage(wanted.stage), serve=serve)
        logger.info(
            "serving %s/%s as %s",
            wanted.model_name,
            wanted.version,
            wanted.stage,
            extra={"model": wanted.model_name, "version": wanted.version},
        )

    async def _fall_back(self, track: Track[T], wanted: Deployment) -> None:
        """The wanted production was refused and nothing serves it: serve the last good one.

        Candidates, in order: what served last (the cache), then the most recently replaced
        production of the deployment history (stage ``previous``).
        """
        name = wanted.model_name
        store = track.store
        if store.default_version(name) is not None:
            return  # the old version keeps serving
        previous = [d for d in self.state.others.values() if d.model_name == name]
        candidates = [self._last_good.get(name), *reversed(previous)]
        for good in candidates:
            if good is None or good.version == wanted.version or good.stage == "retired":
                continue
            if self._track(good) is not track:
                continue  # a release of another kind under the same name: not a stand-in
            loaded = store.get(name, good.version) or await self._load(track, good)
            if loaded is None:
                continue
            store.install(loaded.with_stage("production"), serve=True)
            logger.warning(
                "serving last known good %s/%s instead of refused %s",
                name,
                good.version,
                wanted.version,
            )
            return

    async def _publish_state(self, after: list[Deployment]) -> None:
        for track in self._tracks():
            track.gauge.clear()
            for d in track.store.served():
                track.gauge.labels(d.model_name, d.version, d.stage).set(1)
        self._last_good.update({d.model_name: d for d in after if d.stage == "production"})
        self.cache.save(after)
        if self._on_change is not None:
            await self._on_change()
