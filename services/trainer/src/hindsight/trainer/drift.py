"""Live drift of ``signal.features`` against the production model's training reference.

The ingestor hands every signal to :meth:`FeatureDrift.observe` (O(features), no I/O).
A background task re-reads the production version every ``refresh_s`` (registry
``GET /v1/deployments`` → the artifact's metrics.json ``reference_distributions``; a new
version starts a fresh window) and refreshes the gauges every ``export_s``. Gauges read
NaN until the window holds ``min_rows`` rows, so ``> threshold`` alerts stay quiet on
too little data.
"""

from __future__ import annotations

import asyncio
import logging
import math
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from hindsight.common.artifacts import load_card, resolve_artifact
from hindsight.common.drift import FeatureReference, parse_references
from hindsight.common.events import SignalFeatures
from hindsight.common.tasks import cancel_and_wait
from hindsight.trainer.domain.drift import LiveDrift
from hindsight.trainer.metrics import (
    DRIFT_FEATURES_OVER,
    DRIFT_REFERENCE,
    DRIFT_ROWS,
    FEATURE_MISSING_SHARE,
    FEATURE_OUT_OF_RANGE_SHARE,
    FEATURE_PSI,
    FEATURE_REFERENCE_MISSING_SHARE,
)

__all__ = ["FeatureDrift", "ProductionReference", "ReferenceSource", "RegistryReferences"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProductionReference:
    """The production version of a model and its per-feature references."""

    version: str
    references: dict[str, FeatureReference]


class ReferenceSource(Protocol):
    """Where the production model's reference comes from."""

    async def production(self, model_name: str) -> ProductionReference | None: ...


class RegistryReferences:
    """The registry's deployments plus the artifact's metrics.json."""

    def __init__(self, registry_url: str | None, artifact_root: Path, *, timeout: float = 5.0):
        self.registry_url = registry_url
        self.artifact_root = artifact_root
        self.timeout = timeout
        self._cached: ProductionReference | None = None

    async def production(self, model_name: str) -> ProductionReference | None:
        """None when there is no production version or its card has no reference."""
        if not self.registry_url:
            return None
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.get(f"{self.registry_url}/v1/deployments")
            response.raise_for_status()
            deployments = response.json()
        mine = [d for d in deployments if d.get("model_name") == model_name]
        if not mine:
            return None
        version = str(mine[0]["version"])
        if self._cached is not None and self._cached.version == version:
            return self._cached  # a version's card never changes: read it once
        directory = resolve_artifact(self.artifact_root, str(mine[0]["artifact_uri"]))
        card = await asyncio.to_thread(load_card, directory)
        raw = (card.model_extra or {}).get("reference_distributions")
        references = parse_references(raw, card.feature_names, on_skip=_skipped)
        if not references:
            return None
        self._cached = ProductionReference(version, references)
        return self._cached


def _skipped(name: str, reason: str) -> None:
    # Once per production version: the reference is read once and cached.
    logger.warning("no usable reference distribution for feature %s (%s); no drift", name, reason)


class FeatureDrift:
    """The live window of one model's production reference, and its gauges (a part)."""

    def __init__(
        self,
        source: ReferenceSource,
        *,
        model_name: str,
        window: int,
        min_rows: int,
        psi_threshold: float,
        refresh_s: float,
        export_s: float,
    ) -> None:
        self.source = source
        self.model_name = model_name
        self.window = window
        self.min_rows = min_rows
        self.psi_threshold = psi_threshold
        self.refresh_s = refresh_s
        self.export_s = export_s
        self.version: str | None = None
        self.monitor: LiveDrift | None = None
        self._exported: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def observe(self, event: SignalFeatures) -> None:
        """Add a signal's features to the window (nothing while no reference is known)."""
        if self.monitor is not None:
            self.monitor.observe(event.features)

    async def refresh(self) -> None:
        """Re-read the production reference; a new version starts a new window."""
        found = await self.source.production(self.model_name)
        if found is None:
            if self.monitor is not None:
                logger.info("no production reference for %s any more", self.model_name)
            self.version, self.monitor = None, None
            return
        if found.version != self.version:
            logger.info("live drift against %s/%s", self.model_name, found.version)
            self.version = found.version
            self.monitor = LiveDrift(found.references, window=self.window, min_rows=self.min_rows)

    def export(self) -> None:
        """Set the gauges of the current window; drop series of features no longer watched."""
        model = self.model_name
        monitor = self.monitor
        features = monitor.features if monitor else []
        for feature in set(self._exported) - set(features):
            for gauge in (
                FEATURE_PSI,
                FEATURE_MISSING_SHARE,
                FEATURE_OUT_OF_RANGE_SHARE,
                FEATURE_REFERENCE_MISSING_SHARE,
            ):
                with suppress(KeyError):
                    gauge.remove(model, feature)
        self._exported = list(features)
        DRIFT_REFERENCE.clear()
        if monitor is None:
            DRIFT_ROWS.labels(model).set(0)
            DRIFT_FEATURES_OVER.labels(model).set(math.nan)
            return
        DRIFT_REFERENCE.labels(model, self.version or "").set(1)
        report = monitor.report()
        DRIFT_ROWS.labels(model).set(report.rows)
        DRIFT_FEATURES_OVER.labels(model).set(
            report.over(self.psi_threshold) if report.psi is not None else math.nan
        )
        for feature in features:
            FEATURE_PSI.labels(model, feature).set((report.psi or {}).get(feature, math.nan))
            FEATURE_MISSING_SHARE.labels(model, feature).set(
                (report.missing_share or {}).get(feature, math.nan)
            )
            FEATURE_OUT_OF_RANGE_SHARE.labels(model, feature).set(
                (report.out_of_range_share or {}).get(feature, math.nan)
            )
            FEATURE_REFERENCE_MISSING_SHARE.labels(model, feature).set(
                monitor.references[feature].missing_share
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = 0.0
        while True:
            if loop.time() >= next_refresh:
                next_refresh = loop.time() + self.refresh_s
                try:
                    await self.refresh()
                except Exception as exc:  # registry down, artifact unreadable: keep the old one
                    logger.warning("drift reference refresh failed: %s", exc)
            try:
                self.export()
            except Exception:
                logger.exception("drift export failed")
            await asyncio.sleep(min(self.export_s, self.refresh_s))

    async def start(self) -> None:
        """Run the refresh/export loop in the background."""
        self._task = asyncio.create_task(self._run(), name="trainer-feature-drift")

    async def stop(self) -> None:
        """Stop the loop."""
        await cancel_and_wait(self._task)
        self._task = None
