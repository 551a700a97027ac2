"""The embedder's Prometheus metrics (names fixed by the operators' dashboards)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from hindsight.common.metrics import init_series

__all__ = ["BATCH_SIZE", "EMBEDDINGS", "EMBED_SECONDS", "LAG_SECONDS", "QUERIES"]

EMBEDDINGS = Counter(
    "hindsight_embedder_embeddings_total",
    "embedding.created events published.",
    ["modality", "collection"],
)
BATCH_SIZE = Histogram(
    "hindsight_embedder_batch_size",
    "Items per model forward pass.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
EMBED_SECONDS = Histogram(
    "hindsight_embedder_embed_seconds",
    "Model forward time per batch.",
    ["modality"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LAG_SECONDS = Histogram(
    "hindsight_embedder_lag_seconds",
    "From the event's occurred_at to its embedding.created being published.",
    ["modality"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
QUERIES = Counter(
    "hindsight_embedder_queries_total",
    "embed.query requests answered, by tower and outcome (ok, invalid, error).",
    ["tower", "outcome"],
)

# Known label sets at 0 from import, so rate()/increase() see the first event.
init_series(EMBEDDINGS, ["image"], ["trade_cases"])
init_series(EMBEDDINGS, ["text"], ("trade_cases", "theory_docs", "prompts_history"))
init_series(QUERIES, ("clip", "text"), ("ok", "invalid", "error"))
