"""Issue 13: a PNG path has one spelling, so one file is one memory record."""

from __future__ import annotations

import json

import pytest

from hindsight.common.events import InvalidEventError, PngCreated, parse_event
from hindsight.common.paths import canonical_path
from hindsight.common.record_ids import image_vector_id

pytestmark = pytest.mark.unit

SPELLINGS = [
    "/data/charts/run-1/a/b.png",
    "/data/charts/run-1/a/./b.png",
    "/data/charts//run-1/a/b.png",
    "/data/charts/run-1/x/../a/b.png",
    "/data/charts/run-1/a/b.png/",
]


def _png(path: str) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "occurred_at": "2024-05-01T12:00:00Z",
            "source": "chart-renderer",
            "file_path": path,
            "run_id": "run-1",
        }
    ).encode()


def test_every_spelling_has_one_canonical_form_and_one_vector_id() -> None:
    assert {canonical_path(p) for p in SPELLINGS} == {"/data/charts/run-1/a/b.png"}
    assert len({image_vector_id(p) for p in SPELLINGS}) == 1


def test_png_created_is_normalised_so_its_key_and_message_id_are_one() -> None:
    events = [parse_event("png.created", _png(p)) for p in SPELLINGS]
    assert all(isinstance(e, PngCreated) for e in events)
    assert {e.file_path for e in events} == {"/data/charts/run-1/a/b.png"}  # type: ignore[attr-defined]
    # One Nats-Msg-Id: JetStream stores the first, and every consumer keys one record.
    assert len({e.message_id() for e in events}) == 1
    assert {image_vector_id(e.idempotency_key()) for e in events} == {image_vector_id(SPELLINGS[0])}


@pytest.mark.parametrize("path", ["a/./b.png", "a/b.png", "./b.png", "~/b.png"])
def test_a_relative_png_path_is_refused_naming_the_field(path: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event("png.created", _png(path))
    assert info.value.field == "file_path"
    assert "absolute path" in str(info.value)
