"""Makes the loaded models follow the deployment state.

Loads what is wanted and not loaded (in a worker thread), swaps it in, unloads what is
no longer wanted (never the version that serves), and saves what serves to the cache.
A refused artifact is logged and counted and leaves the previous version serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from hindsight.scorer.domain.deployments import Deployment, DeploymentState
from hindsight.scorer.domain.models import LoadedModel, ModelStore
from hindsight.scorer.loader import ArtifactRefusedError
from hindsight.scorer.metrics import LOAD_FAILURES, MODELS_LOADED
from hindsight.scorer.sources import DeploymentCache

__all__ = ["Loader", "Reconciler"]

logger = logging.getLogger(__name__)


class Loader(Protocol):
    """Builds a loaded model from a deployment (blocking; run in a thread)."""

    def load(self, deployment: Deployment) -> LoadedModel: ...


class Reconciler:
    """Owns the wanted :class:`DeploymentState` and applies it to the :class:`ModelStore`."""

    def __init__(
        self,
        store: ModelStore,
        loader: Loader,
        cache: DeploymentCache,
        *,
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.cache = cache
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

    async def _load(self, deployment: Deployment) -> LoadedModel | None:
        key = (deployment.model_name, deployment.version, deployment.sha256)
        if key in self._refused:
            return None
        try:
            return await asyncio.to_thread(self.loader.load, deployment)
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
        before = self.store.served()
        for wanted in self.state.wanted():
            serve = wanted.stage == "production"
            current = self.store.get(wanted.model_name, wanted.version)
            if current is None or current.deployment.sha256 != wanted.sha256:
                loaded = await self._load(wanted)
                if loaded is None:
                    if serve:
                        await self._fall_back(wanted)
                    continue
                current = loaded
            elif current.deployment.stage == wanted.stage and not (
                serve and self.store.default_version(wanted.model_name) != wanted.version
            ):
                continue
            self.store.install(current.with_stage(wanted.stage), serve=serve)
            logger.info(
                "serving %s/%s as %s",
                wanted.model_name,
                wanted.version,
                wanted.stage,
                extra={"model": wanted.model_name, "version": wanted.version},
            )
        keep = {(d.model_name, d.version) for d in self.state.wanted()}
        for model in self.store.loaded():
            if (model.name, model.version) not in keep and self.store.remove(
                model.name, model.version
            ):
                logger.info("unloaded %s/%s", model.name, model.version)
        after = self.store.served()
        if after != before:
            await self._publish_state(after)

    async def _fall_back(self, wanted: Deployment) -> None:
        """The wanted production was refused and nothing serves it: serve the last good one.

        Candidates, in order: what served last (the cache), then the most recently replaced
        production of the deployment history (stage ``previous``).
        """
        name = wanted.model_name
        if self.store.default_version(name) is not None:
            return  # the old version keeps serving
        previous = [d for d in self.state.others.values() if d.model_name == name]
        candidates = [self._last_good.get(name), *reversed(previous)]
        for good in candidates:
            if good is None or good.version == wanted.version or good.stage == "retired":
                continue
            loaded = self.store.get(name, good.version) or await self._load(good)
            if loaded is None:
                continue
            self.store.install(loaded.with_stage("production"), serve=True)
            logger.warning(
                "serving last known good %s/%s instead of refused %s",
                name,
                good.version,
                wanted.version,
            )
            return

    async def _publish_state(self, after: list[Deployment]) -> None:
        MODELS_LOADED.clear()
        for d in after:
            MODELS_LOADED.labels(d.model_name, d.version, d.stage).set(1)
        self._last_good.update({d.model_name: d for d in after if d.stage == "production"})
        self.cache.save(after)
        if self._on_change is not None:
            await self._on_change()
