"""Event → embedding.created mapping, embed.query validation, backfill event building."""

from __future__ import annotations

from pathlib import Path

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import VECTOR_METADATA_KEYS, JsonCreated, PngCreated
from hindsight.common.record_ids import doc_vector_id, image_vector_id
from hindsight.embedder.cli import find_pngs, folder_events
from hindsight.embedder.pipeline import EmbedQuery, _parse_query
from hindsight.embedder.records import collection_for, image_embedding, text_embedding

pytestmark = pytest.mark.unit


def test_image_record_has_the_mandatory_metadata_and_no_unknown_optionals() -> None:
    event = PngCreated.create(source="renderer", file_path="/c/a.png", run_id="r1")
    record = image_embedding(
        event,
        [0.6, 0.8],
        model="open_clip:ViT-B-32:random",
        random_weights=True,
        thumbnail_b64="iVBO",
    )
    assert record.vector_id == image_vector_id("/c/a.png")
    assert set(VECTOR_METADATA_KEYS) <= set(record.metadata)
    assert "image_type" not in record.metadata and "symbol" not in record.metadata
    assert record.metadata["trade_id"] is None
    assert record.metadata["random_weights"] is True
    assert record.message_id() == f"embedding.created:{record.vector_id}"


def test_metadata_timestamp_is_the_event_time_ts_not_the_write_time() -> None:
    # A backtest writes in 2025 the chart of a 2017 trade: memory's as_of must see 2017.
    png = PngCreated.create(
        source="renderer", file_path="/c/a.png", run_id="r1", ts="2017-03-01T09:30:00+01:00"
    )
    doc = JsonCreated.create(
        source="s", doc_type="trade_meta", run_id="r", payload={"a": 1}, ts="2017-03-01T08:30:00Z"
    )
    image = image_embedding(png, [1.0], model="m", random_weights=True, thumbnail_b64="iVBO")
    text = text_embedding(doc, [1.0], model="m", document="d")
    assert image.metadata["timestamp"] == text.metadata["timestamp"] == "2017-03-01T08:30:00Z"
    # Without ts: when the file was written (occurred_at), as before.
    plain = PngCreated.create(
        source="renderer", file_path="/c/b.png", run_id="r1", occurred_at="2025-01-02T03:04:05Z"
    )
    record = image_embedding(plain, [1.0], model="m", random_weights=True, thumbnail_b64="iVBO")
    assert record.metadata["timestamp"] == "2025-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("doc_type", "collection"),
    [
        ("theory", "theory_docs"),
        ("prompt", "prompts_history"),
        ("trade_meta", "trade_cases"),
        ("llm_suggestion", "trade_cases"),
        ("zone", "trade_cases"),
    ],
)
def test_collection_by_doc_type(doc_type: str, collection: str) -> None:
    assert collection_for(doc_type) == collection


def test_text_record_id_follows_the_idempotency_key() -> None:
    event = JsonCreated.create(
        source="s", doc_type="llm_suggestion", run_id="r", payload={"trade_id": "t9", "label": "x"}
    )
    record = text_embedding(event, [1.0], model="all-MiniLM-L6-v2", document="doc")
    assert record.vector_id == doc_vector_id(event.idempotency_key())
    assert record.metadata["trade_id"] == "t9"  # from the payload when the event has none
    assert record.metadata["file_path"] == "" and record.document == "doc"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1]", "body"),
        (b"{}", "text"),
        (b'{"text": "a", "image_path": "b"}', "text"),
        (b'{"text": "  "}', "text"),
        (b'{"image_path": 3}', "image_path"),
        (b'{"text": "a", "tower": "audio"}', "tower"),
        (b'{"image_path": "a.png", "tower": "text"}', "tower"),
    ],
)
def test_bad_queries_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        _parse_query(body)
    assert info.value.field == field


def test_query_tower_defaults_to_clip() -> None:
    assert _parse_query(b'{"text": "breakout"}') == EmbedQuery(tower="clip", text="breakout")


def test_backfill_finds_pngs_recursively_and_builds_events(tmp_path: Path) -> None:
    for name in ("b/2.png", "a.PNG", "c/notes.txt", "1.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    paths = find_pngs(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["1.png", "a.PNG", "b/2.png"]
    events = folder_events(paths, run_id="r7", source="hindsight-embed", image_type="original")
    assert [e.file_path for e in events] == [str(p) for p in paths]
    assert all(e.run_id == "r7" and e.image_type == "original" and e.symbol is None for e in events)
