"""The core object HTTP and NATS call: point-in-time windows, gaps, liquidity clusters."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

import numpy as np

from hindsight.common.tasks import BackgroundTask
from hindsight.market.domain.bars import TIMEFRAMES, timeframe_of
from hindsight.market.domain.clusters import (
    CLUSTER_RULE_VERSION,
    DOLLAR_VOLUME_WINDOW,
    liquidity_clusters,
    rolling_dollar_volume,
)
from hindsight.market.metrics import CLUSTERS
from hindsight.market.schemas import (
    BarPublic,
    BarWindow,
    ClusterPublic,
    GapList,
    GapPublic,
    LabelList,
    LabelPublic,
    WindowQuery,
)
from hindsight.market.storage import Storage

__all__ = ["ClusterRefresher", "Market"]

logger = logging.getLogger(__name__)

# Longest fixed bars first: a symbol's dollar volume comes from its daily bars when it has
# them; monthly bars (spread over their days) only for a symbol that has nothing shorter.
_PREFERRED = (
    *sorted(
        (name for name, tf in TIMEFRAMES.items() if not tf.is_calendar),
        key=lambda name: TIMEFRAMES[name],
        reverse=True,
    ),
    *(name for name, tf in TIMEFRAMES.items() if tf.is_calendar),
)


class Market:
    """Reads over the stored bars, for every transport."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def window(self, query: WindowQuery) -> BarWindow:
        """The last ``query.n`` bars that had closed by ``query.end`` (never a later one)."""
        opened_by = timeframe_of(query.timeframe).latest_open_closed_by(query.end)
        stored = await self.storage.bars.window(
            self.storage.pool, query.symbol, query.timeframe, opened_by=opened_by, n=query.n
        )
        cluster = await self.storage.bars.cluster(self.storage.pool, query.symbol)
        versions = {v for b in stored if (v := b.derived.indicator_version) is not None}
        return BarWindow(
            symbol=query.symbol,
            timeframe=query.timeframe,
            end=query.end,
            n=query.n,
            bars=[BarPublic.of(b) for b in stored],
            indicator_version=max(versions) if versions else None,
            liquidity_cluster=None if cluster is None else cluster.cluster,
            cluster_rule_version=None if cluster is None else cluster.rule_version,
        )

    async def gaps(self, symbol: str, timeframe: str, *, limit: int) -> GapList:
        """The series' reported gaps, newest first."""
        found = await self.storage.bars.gaps(self.storage.pool, symbol, timeframe, limit=limit)
        return GapList(symbol=symbol, timeframe=timeframe, gaps=[GapPublic.of(g) for g in found])

    async def labels(self, signal_id: str, *, label_spec: str | None) -> LabelList:
        """A signal's labels under ``label_spec``, or under every spec."""
        found = await self.storage.signals.labels_of(
            self.storage.pool, signal_id, label_spec=label_spec
        )
        return LabelList(signal_id=signal_id, labels=[LabelPublic.of(r) for r in found])

    async def cluster(self, symbol: str) -> ClusterPublic | None:
        """The symbol's liquidity cluster, when ranked."""
        record = await self.storage.bars.cluster(self.storage.pool, symbol)
        return None if record is None else ClusterPublic.of(record)


class ClusterRefresher:
    """Re-ranks every symbol's liquidity cluster at start and every ``every_s`` (a part)."""

    def __init__(self, storage: Storage, *, every_s: float) -> None:
        self.storage = storage
        self.every_s = every_s
        self._task = BackgroundTask("cluster-refresher")
        self._wake = asyncio.Event()

    async def refresh(self) -> dict[str, str]:
        """Rank the symbols now (the rule: ``domain.clusters``); symbol → cluster."""
        daily = await self.storage.bars.daily_dollar_volumes(
            self.storage.pool, days=DOLLAR_VOLUME_WINDOW, preferred=_PREFERRED
        )
        volume = {
            symbol: rolling_dollar_volume(
                np.array(values, dtype=np.float64), np.ones(len(values), dtype=np.float64)
            )
            for symbol, values in daily.items()
            if values
        }
        clusters = liquidity_clusters(volume)
        if clusters:
            await self.storage.bars.replace_clusters(
                self.storage.pool, clusters, volume, rule_version=CLUSTER_RULE_VERSION
            )
        for name in ("H", "M", "L"):
            CLUSTERS.labels(name).set(sum(1 for c in clusters.values() if c == name))
        return clusters

    def notify(self) -> None:
        """Bars arrived: re-rank at the next pass rather than at the next period."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # database away: the next pass tries again
                logger.exception("cluster refresh failed")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.every_s)
            # Bars come in bursts: rank once per burst, not once per batch.
            await asyncio.sleep(min(5.0, self.every_s))

    async def start(self) -> None:
        """Rank now and then periodically."""
        self._task.start(self._run())

    async def stop(self) -> None:
        """Stop ranking."""
        await self._task.stop()
