"""The periodic task that bins scored rows into each version's drift window and exports PSI.

Every ``flush_s`` it takes the rows the hot path queued in each loaded version's
:class:`DriftMonitor` and bins them in a worker thread; every ``export_s`` it refreshes
the gauges. Series of versions that are no longer loaded are removed. A load or an
unload is exported at the next flush round, without waiting for ``export_s``. Until a version
has ``min_rows`` rows in its window its PSI gauges read NaN (the series exist from the
first export after the load; ``> threshold`` is false for NaN, so no alert fires on too
little data).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from contextlib import suppress

from prometheus_client import Gauge

from hindsight.scorer.domain.models import ModelStore
from hindsight.scorer.metrics import (
    DRIFT_FEATURES_OVER,
    DRIFT_MAX_PSI,
    DRIFT_ROWS,
    FEATURE_PSI,
)

__all__ = ["DriftExporter"]

logger = logging.getLogger(__name__)


class DriftExporter:
    """Flushes the drift monitors of the loaded versions and keeps the gauges current."""

    def __init__(
        self, store: ModelStore, *, threshold: float, flush_s: float, export_s: float
    ) -> None:
        self.store = store
        self.threshold = threshold
        self.flush_s = flush_s
        self.export_s = export_s
        self._exported: dict[tuple[str, str], list[str]] = {}

    async def run(self) -> None:
        """Loop until cancelled; an error in one round is logged, the next round runs."""
        last_export = -math.inf
        while True:
            try:
                await self.flush()
                due = time.monotonic() - last_export >= self.export_s
                if due or self._loaded_changed():
                    last_export = time.monotonic()
                    self.export()
            except Exception:
                logger.exception("drift round failed")
            await asyncio.sleep(self.flush_s)

    async def flush(self) -> None:
        """Bin every loaded version's pending rows in a worker thread.

        ``take`` (a copy, on the loop) leaves the hot path free to keep queueing; the
        binning (a few ms for 2,000 rows x 68 features) runs off the event loop.
        """
        for model in self.store.loaded():
            monitor = model.drift
            if monitor is None:
                continue
            rows = monitor.take()
            if rows is not None:
                await asyncio.to_thread(monitor.add, rows)

    def _loaded_changed(self) -> bool:
        loaded = {(m.name, m.version) for m in self.store.loaded() if m.drift is not None}
        return loaded != self._exported.keys()

    def export(self) -> None:
        """Set the gauges of the loaded versions; drop those of unloaded versions."""
        seen: dict[tuple[str, str], list[str]] = {}
        for model in self.store.loaded():
            monitor = model.drift
            if monitor is None:
                continue
            key = (model.name, model.version)
            seen[key] = monitor.features
            report = monitor.report()
            DRIFT_ROWS.labels(*key).set(report.rows)
            values = report.psi or {}
            for feature in monitor.features:
                FEATURE_PSI.labels(*key, feature).set(values.get(feature, math.nan))
            top = report.max_psi
            DRIFT_MAX_PSI.labels(*key).set(math.nan if top is None else top)
            DRIFT_FEATURES_OVER.labels(*key).set(report.over(self.threshold))
        for key, features in self._exported.items():
            if key in seen:
                continue
            for gauge in (DRIFT_ROWS, DRIFT_MAX_PSI, DRIFT_FEATURES_OVER):
                _remove(gauge, *key)
            for feature in features:
                _remove(FEATURE_PSI, *key, feature)
            logger.info("drift series of %s/%s removed (unloaded)", *key)
        self._exported = seen


def _remove(gauge: Gauge, *labels: str) -> None:
    with suppress(KeyError):
        gauge.remove(*labels)
