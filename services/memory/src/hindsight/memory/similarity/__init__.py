"""Similarity-API storage: Pattern-CNN embeddings in PostgreSQL (pgvector HNSW, cosine) and
point-in-time nearest-neighbour queries with ``sim_conf`` and ``hist_rr_pct``."""

from hindsight.memory.similarity.query import DEFAULT_P, EF_SEARCH, SimilarityQuery
from hindsight.memory.similarity.records import (
    EMBED_DIM,
    MAX_K,
    NearestResult,
    Neighbour,
    PatternEmbed,
    PatternOutcome,
    UpsertCounts,
    outcome_of,
)
from hindsight.memory.similarity.scores import percentile, sim_conf
from hindsight.memory.similarity.store import PatternStore, PoolSource

__all__ = [
    "DEFAULT_P",
    "EF_SEARCH",
    "EMBED_DIM",
    "MAX_K",
    "NearestResult",
    "Neighbour",
    "PatternEmbed",
    "PatternOutcome",
    "PatternStore",
    "PoolSource",
    "SimilarityQuery",
    "UpsertCounts",
    "outcome_of",
    "percentile",
    "sim_conf",
]
