"""The Python where-evaluator against Chroma itself (embedded, in a tmp dir).

Property-style: random records with mixed-type and missing keys, random filters through
``validate_filter``; the evaluator must select exactly the ids ``collection.get(where=…)``
returns. A second part checks Chroma's filtered nearest-neighbour query agrees too.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import chromadb
import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.memory.domain.filters import validate_filter
from hindsight.memory.domain.where import matches, where_predicate

pytestmark = pytest.mark.unit

KEYS = ["symbol", "n", "x", "flag", "grade"]
STRINGS = ["EURUSD", "GBPUSD", "A", "B", "1", ""]
INTS = [-3, -1, 0, 1, 2, 5, 1_700_000_000]
FLOATS = [-2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 1_700_000_000.25]
N_RECORDS = 300
N_FILTERS = 60


def _value(rng: random.Random) -> Any:
    kind = rng.choice(["str", "int", "float", "bool"])
    if kind == "str":
        return rng.choice(STRINGS)
    if kind == "int":
        return rng.choice(INTS)
    if kind == "float":
        return rng.choice(FLOATS)
    return rng.random() < 0.5


def _record(rng: random.Random) -> dict[str, Any]:
    # Each key is missing a third of the time; Chroma needs at least one key.
    meta = {key: _value(rng) for key in KEYS if rng.random() < 0.67}
    return meta or {"symbol": rng.choice(STRINGS)}


def _number(rng: random.Random) -> int | float:
    return rng.choice(INTS) if rng.random() < 0.5 else rng.choice(FLOATS)


def _condition(rng: random.Random) -> dict[str, Any]:
    key = rng.choice(KEYS)
    op = rng.choice(["plain", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"])
    if op == "plain":
        return {key: _value(rng)}
    if op in ("$eq", "$ne"):
        return {key: {op: _value(rng)}}
    if op in ("$in", "$nin"):
        pool: list[Any] = rng.choice([STRINGS, INTS, FLOATS, [True, False]])
        return {key: {op: rng.sample(pool, rng.randint(1, min(3, len(pool))))}}
    if rng.random() < 0.3:  # a range on one field: two operators in one object
        return {key: {op: _number(rng), rng.choice(["$gt", "$lte"]): _number(rng)}}
    return {key: {op: _number(rng)}}


def _filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    roll = rng.random()
    if depth < 2 and roll < 0.35:
        logical = rng.choice(["$and", "$or"])
        return {logical: [_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if roll < 0.5:  # several fields in one object (ANDed)
        out: dict[str, Any] = {}
        for _ in range(2):
            out.update(_condition(rng))
        return out
    return _condition(rng)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, dict[str, Any]]]:
    path: Path = tmp_path_factory.mktemp("chroma-where")
    client = chromadb.PersistentClient(path=str(path))
    col = client.create_collection(
        "where-check", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    rng = random.Random(11)
    records = {f"r{i:03d}": _record(rng) for i in range(N_RECORDS)}
    col.add(
        ids=list(records),
        embeddings=[[rng.gauss(0, 1) for _ in range(8)] for _ in records],
        metadatas=list(records.values()),
    )
    # What Chroma hands back is what the search evaluates (types as stored).
    got = col.get(include=["metadatas"])
    stored = dict(zip(got["ids"], got["metadatas"], strict=True))
    return col, stored


def test_random_filters_select_what_chroma_selects(
    collection: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    col, stored = collection
    rng = random.Random(5)
    checked = 0
    non_trivial = 0
    while checked < N_FILTERS:
        raw = _filter(rng)
        try:
            where = validate_filter(raw)
        except InvalidInputError:  # e.g. the same key twice with clashing operators
            continue
        assert where is not None
        expected = set(col.get(where=where, include=[])["ids"])
        predicate = where_predicate(where)
        selected = {vid for vid, meta in stored.items() if predicate(meta)}
        assert selected == expected, (raw, sorted(selected ^ expected)[:5])
        checked += 1
        non_trivial += 0 < len(expected) < N_RECORDS
    # The property only means something when filters split the records.
    assert non_trivial >= N_FILTERS // 2


@pytest.mark.parametrize(
    "where",
    [
        {"n": {"$lt": 1.5}},  # int column, float operand: Chroma truncates to 1
        {"n": {"$gte": -0.5}},
        {"x": {"$eq": 1}},
        {"n": {"$ne": 1}},  # missing keys and other types match $ne
        {"flag": {"$eq": True}},
        {"flag": {"$nin": [True]}},
        {"symbol": {"$in": ["EURUSD", "A"]}},
        {"$or": [{"n": {"$gt": 1}}, {"grade": {"$eq": "B"}}]},
        {"$and": [{"x": {"$gte": -1}}, {"x": {"$lt": 1.5}}]},
    ],
)
def test_edge_cases_agree_with_chroma(
    collection: tuple[Any, dict[str, dict[str, Any]]], where: dict[str, Any]
) -> None:
    col, stored = collection
    expected = set(col.get(where=where, include=[])["ids"])
    assert expected, "the edge case should select something in this data"
    assert {vid for vid, meta in stored.items() if matches(where, meta)} == expected


def test_filtered_nearest_neighbours_agree(
    collection: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    """Top-k of Chroma's filtered query = the first k matching ids of the full ranking."""
    col, stored = collection
    rng = random.Random(3)
    query = [rng.gauss(0, 1) for _ in range(8)]
    ranked = col.query(query_embeddings=[query], n_results=N_RECORDS, include=[])["ids"][0]
    for where in [{"symbol": {"$eq": "EURUSD"}}, {"n": {"$gt": 0}}, {"flag": {"$ne": False}}]:
        predicate = where_predicate(where)
        mine = [vid for vid in ranked if predicate(stored[vid])][:10]
        theirs = col.query(query_embeddings=[query], n_results=10, where=where, include=[])
        assert theirs["ids"][0] == mine


def test_shorthand_none_and_unknown_operators() -> None:
    meta = {"symbol": "EURUSD", "n": 3}
    assert matches(None, meta) and matches(None, None)
    assert matches({"symbol": "EURUSD", "n": {"$gte": 3}}, meta)
    assert not matches({"symbol": "EURUSD", "n": {"$gt": 3}}, meta)
    assert not matches({"symbol": {"$eq": "EURUSD"}}, None)
    assert matches({"symbol": {"$ne": "EURUSD"}}, None)
    with pytest.raises(ValueError, match="unknown operator"):
        where_predicate({"symbol": {"$regex": "EUR"}})
    with pytest.raises(ValueError, match="numbers only"):
        where_predicate({"symbol": {"$gt": "A"}})
    with pytest.raises(ValueError, match="unknown logical operator"):
        where_predicate({"$not": [{"symbol": "A"}]})
