"""Pure logic: filter validation, reciprocal rank fusion, chunking, record naming."""

from __future__ import annotations

from typing import Any

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.memory.domain.chunking import chunk_text, normalise_text
from hindsight.memory.domain.filters import combine, validate_filter
from hindsight.memory.domain.fusion import reciprocal_rank_fusion
from hindsight.memory.domain.records import (
    chroma_metadata,
    full_metadata,
    model_slug,
    physical_name,
)
from hindsight.memory.search import parse_search_request

pytestmark = pytest.mark.unit


# --- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ({}, None),
        ({"symbol": "EURUSD"}, {"symbol": {"$eq": "EURUSD"}}),
        (
            {"symbol": "EURUSD", "image_type": {"$in": ["original", "annotated"]}},
            {
                "$and": [
                    {"symbol": {"$eq": "EURUSD"}},
                    {"image_type": {"$in": ["original", "annotated"]}},
                ]
            },
        ),
        (
            {"ts": {"$gte": 1, "$lt": 5.5}},
            {"$and": [{"ts": {"$gte": 1}}, {"ts": {"$lt": 5.5}}]},
        ),
        ({"$and": [{"symbol": "X"}]}, {"symbol": {"$eq": "X"}}),
        (
            {"$or": [{"symbol": "X"}, {"quality_grade": {"$ne": "D"}}]},
            {"$or": [{"symbol": {"$eq": "X"}}, {"quality_grade": {"$ne": "D"}}]},
        ),
        ({"random_weights": True}, {"random_weights": {"$eq": True}}),
    ],
)
def test_valid_filters_are_normalised(given: Any, expected: Any) -> None:
    assert validate_filter(given) == expected


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("EURUSD", "expected an object"),
        ({"symbol": {"$regex": "EUR.*"}}, "unknown operator '$regex'"),
        ({"$not": [{"a": 1}]}, "unknown operator '$not'"),
        ({"symbol": None}, "filter.symbol"),
        ({"symbol": ["a", "b"]}, "filter.symbol"),
        ({"ts": {"$gt": "yesterday"}}, "$gt compares numbers only"),
        ({"ts": {"$gt": True}}, "$gt compares numbers only"),
        ({"symbol": {"$in": []}}, "non-empty list"),
        ({"symbol": {"$in": ["a", 1]}}, "same type"),
        ({"ts": {"$nin": [1, 2.5]}}, "same type"),  # Chroma refuses mixed ints and floats
        ({"symbol": {"$in": [{"a": 1}]}}, "list items"),
        ({"$and": []}, "non-empty list"),
        ({"$and": {"symbol": "x"}}, "non-empty list"),
        ({"$and": [{"symbol": "x"}, "y"]}, "filter.$and[1]"),
        ({"symbol": {}}, "filter.symbol"),
    ],
)
def test_malformed_filters_name_the_field_and_the_part(given: Any, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_filter(given)
    assert caught.value.field == "filter"
    assert fragment in caught.value.reason


def test_deeply_nested_filter_is_refused() -> None:
    node: dict[str, Any] = {"a": 1}
    for _ in range(12):
        node = {"$and": [node, {"b": 2}]}
    with pytest.raises(InvalidInputError, match="nested deeper"):
        validate_filter(node)


def test_combine_skips_missing_clauses() -> None:
    a, b = {"x": {"$eq": 1}}, {"ts": {"$lt": 5.0}}
    assert combine(None, None) is None
    assert combine(a, None) == a
    assert combine(a, b) == {"$and": [a, b]}


# --- search request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query"),
        ({"text": "a", "vector_id": "x"}, "query"),
        ({"vector": [0.1, 0.2]}, "model"),
        ({"text": "a", "collections": ["nope"]}, "collections"),
        ({"text": "a", "k": 0}, "k"),
        ({"text": "a", "k": 201}, "k"),
        ({"text": "a", "k": "5"}, "k"),
        ({"text": "a", "as_of": "2024-01-01T00:00:00"}, "as_of"),
        ({"text": "a", "as_of": "yesterday"}, "as_of"),
        ({"text": "a", "ingested_before": "2024-01-01T00:00:00"}, "ingested_before"),
        ({"vector_id": "x", "hybrid": True}, "hybrid"),
        ({"text": "a", "filter": {"symbol": {"$like": "E"}}}, "filter"),
        ({"text": "a", "filter": ["symbol"]}, "filter"),
        ({"text": "a", "unknown": 1}, "unknown"),
        ("not an object", "body"),
    ],
)
def test_search_request_validation_names_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_search_request(body)
    assert caught.value.field == field


def test_as_of_becomes_a_numeric_lt_filter() -> None:
    _, where = parse_search_request(
        {"text": "a", "filter": {"symbol": "EURUSD"}, "as_of": "2024-01-01T00:00:00Z"}
    )
    assert where == {"$and": [{"symbol": {"$eq": "EURUSD"}}, {"ts": {"$lt": 1704067200.0}}]}


def test_ingested_before_filters_the_numeric_ingestion_time() -> None:
    _, where = parse_search_request(
        {
            "text": "a",
            "as_of": "2017-06-01T00:00:00Z",
            "ingested_before": "2024-01-01T00:00:00Z",
        }
    )
    assert where == {
        "$and": [{"ts": {"$lt": 1496275200.0}}, {"ingested_ts": {"$lt": 1704067200.0}}]
    }


# --- fusion --------------------------------------------------------------------------------


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]]))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)


def test_rrf_orders_by_score_then_best_rank() -> None:
    ranked = [item for item, _ in reciprocal_rank_fusion([["a", "b"], ["k"]])]
    # a and k both score 1/61; a came from the earlier list; b is last.
    assert ranked == ["a", "k", "b"]


def test_rrf_counts_an_id_once_per_list_and_puts_shared_hits_first() -> None:
    ranked = reciprocal_rank_fusion([["x", "x", "y"], ["y"]])
    assert [item for item, _ in ranked] == ["y", "x"]
    assert dict(ranked)["x"] == pytest.approx(1 / 61)


def test_rrf_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []


# --- chunking ------------------------------------------------------------------------------


def test_short_text_is_one_chunk() -> None:
    assert chunk_text("  Hello   world.\r\n") == ["Hello world."]
    assert chunk_text("   \n ") == []


def test_chunks_respect_size_overlap_and_words() -> None:
    words = [f"word{i:04d}" for i in range(900)]
    text = " ".join(words)
    chunks = chunk_text(text, size=800, overlap=120)
    assert len(chunks) > 1
    assert all(len(c) <= 800 for c in chunks)
    for chunk in chunks:  # never cut inside a word
        assert all(token in set(words) for token in chunk.split())
    for first, second in zip(chunks, chunks[1:], strict=False):
        shared = set(first.split()) & set(second.split())
        assert shared, "consecutive chunks overlap"
    seen = {token for chunk in chunks for token in chunk.split()}
    assert seen == set(words)


def test_chunks_prefer_paragraph_breaks() -> None:
    para = "A sentence about breakouts. " * 20  # ~560 chars
    text = para.strip() + "\n\n" + para.strip()
    chunks = chunk_text(text, size=800, overlap=50)
    assert chunks[0] == para.strip()


def test_chunk_parameters_are_checked() -> None:
    with pytest.raises(ValueError):
        chunk_text("x", size=100, overlap=100)
    assert normalise_text("a\n\n\n\nb") == "a\n\nb"


# --- records -------------------------------------------------------------------------------


def test_physical_names() -> None:
    assert model_slug("open_clip:ViT-B-32:random") == "open-clip-vit-b-32-random"
    assert physical_name("trade_cases", "text", "all-MiniLM-L6-v2") == (
        "trade_cases__text__all-minilm-l6-v2"
    )


def test_metadata_for_chroma_and_for_the_api() -> None:
    meta = {"id": "v", "trade_id": None, "symbol": "EURUSD", "ts": 3.0}
    stored = chroma_metadata(meta, ts=12.5)
    assert stored == {"id": "v", "symbol": "EURUSD", "ts": 12.5}
    shown = full_metadata(meta)
    assert shown["trade_id"] is None and shown["run_id"] is None
    assert shown["user_label"] is None and "ts" not in shown
    # Ingestion time: shown as RFC 3339, stored in Chroma as epoch seconds too; null when
    # unknown (records stored before memory kept it).
    assert shown["ingested_at"] is None
    meta = {"id": "v", "ingested_at": "2024-01-01T00:00:00Z", "ingested_ts": 1.0}
    stored = chroma_metadata(meta, ts=12.5)
    assert stored["ingested_ts"] == 1704067200.0 and stored["ingested_at"] == meta["ingested_at"]
    assert "ingested_ts" not in full_metadata(meta)
