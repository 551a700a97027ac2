"""The memory service's Prometheus metrics (names fixed by the common brief)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from hindsight.common.metrics import init_series
from hindsight.memory.domain.records import LOGICAL_COLLECTIONS

__all__ = ["LABEL_UPDATES", "RECORDS", "SEARCH_PATHS", "SEARCH_SECONDS", "UPSERTS"]

RECORDS = Gauge(
    "hindsight_memory_records",
    "Searchable (not archived) records per logical collection.",
    ["collection"],
)
UPSERTS = Counter(
    "hindsight_memory_upserts_total",
    "Vectors upserted into Chroma, redeliveries included.",
    ["collection"],
)
SEARCH_SECONDS = Histogram(
    "hindsight_memory_search_seconds",
    "Time to answer POST /v1/search, query embedding included.",
    ["mode"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
SEARCH_PATHS = Counter(
    "hindsight_memory_search_path_total",
    "Nearest-neighbour queries per physical collection, by how they were answered: "
    "unfiltered, overfetch (unfiltered neighbours filtered in memory) or chroma_filter "
    "(Chroma's filtered query: the fallback).",
    ["path"],
)
# Known label sets at 0 from import, so rate() and increase() see the first event.
init_series(SEARCH_PATHS, ("unfiltered", "overfetch", "chroma_filter"))
init_series(UPSERTS, LOGICAL_COLLECTIONS)
LABEL_UPDATES = Counter(
    "hindsight_memory_label_updates_total",
    "label.saved events applied to the trade's records.",
)
