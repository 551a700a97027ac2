"""Pure logic added for issue 13: PNG header checks, CSV injection, review queue, cursors."""

from __future__ import annotations

import csv
import io
import struct
import zlib
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hindsight.labeling.domain.export import ExportRow, csv_cell, to_csv
from hindsight.labeling.domain.keymap import key_index, parse_keymap
from hindsight.labeling.domain.labels import LabelRecord, in_review
from hindsight.labeling.domain.paging import PageCursor, decode_cursor, encode_cursor
from hindsight.labeling.domain.pngcheck import (
    PNG_SIGNATURE,
    NotAPngError,
    PngLimits,
    check_png_header,
)

pytestmark = pytest.mark.unit

LIMITS = PngLimits(max_bytes=50 * 1024 * 1024, max_pixels=40_000_000)


def png_header(width: int, height: int, *, kind: bytes = b"IHDR", length: int = 13) -> bytes:
    """Signature + an IHDR chunk (8-bit RGB), as a real encoder writes them."""
    body = struct.pack(">II5B", width, height, 8, 2, 0, 0, 0)
    crc = zlib.crc32(kind + body)
    return PNG_SIGNATURE + struct.pack(">I", length) + kind + body + struct.pack(">I", crc)


def test_a_chart_sized_png_passes_and_gives_its_dimensions() -> None:
    assert check_png_header(png_header(640, 360), size=5000, limits=LIMITS) == (640, 360)


@pytest.mark.parametrize(
    ("head", "size", "reason"),
    [
        (b"", 0, "empty file"),
        (b"hello, I am text\n", 17, "bad signature"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", 5000, "bad signature"),  # a JPEG
        (PNG_SIGNATURE + b"\x00\x00", 10, "truncated"),
        (png_header(640, 360, kind=b"IDAT"), 5000, "first chunk is not IHDR"),
        (png_header(640, 360, length=12), 5000, "first chunk is not IHDR"),
        (png_header(0, 360), 5000, "width 0"),
        (png_header(2**31, 1), 5000, "width 2147483648"),
        # A decompression bomb: tiny file, 100k x 100k pixels declared.
        (png_header(100_000, 100_000), 20_000, "10000000000 pixels, over the limit"),
        (png_header(640, 360), 50 * 1024 * 1024 + 1, "over the limit of 52428800"),
    ],
)
def test_bad_pngs_are_refused_with_the_reason(head: bytes, size: int, reason: str) -> None:
    with pytest.raises(NotAPngError, match=reason):
        check_png_header(head, size=size, limits=LIMITS)


def test_pixel_limit_is_inclusive() -> None:
    limits = PngLimits(max_bytes=100, max_pixels=640 * 360)
    assert check_png_header(png_header(640, 360), size=100, limits=limits) == (640, 360)
    with pytest.raises(NotAPngError):
        check_png_header(png_header(641, 360), size=100, limits=limits)


@pytest.mark.parametrize(
    "value", ['=HYPERLINK("http://x","y")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"]
)
def test_formula_cells_are_neutralised(value: str) -> None:
    assert csv_cell(value) == "'" + value
    record = LabelRecord(
        trade_id="T1", label="review", labeler_id="a", timestamp=datetime(2024, 5, 1, tzinfo=UTC)
    )
    row = ExportRow(
        record=replace(record, user_comment=value), symbol=None, run_id=None, suggestion_label=None
    )
    parsed = list(csv.reader(io.StringIO(to_csv([row]), newline="")))
    assert parsed[1][3] == "'" + value  # user_comment column, quoted safely


def test_plain_cells_are_unchanged() -> None:
    assert csv_cell("clean breakout, stop under = line") == "clean breakout, stop under = line"
    assert csv_cell(None) == "" and csv_cell(True) == "true"


def test_review_queue_holds_review_labels_and_disagreements() -> None:
    assert in_review("review", None) and in_review("review", "review")
    assert in_review("rejected", "approved")  # the LLM approved what the labeler rejected
    assert not in_review("approved", "approved")
    assert not in_review("rejected", None)
    assert not in_review(None, "approved")


@pytest.mark.parametrize(
    "cursor",
    [
        PageCursor(datetime(2024, 5, 1, 3, 4, 5, 123456, tzinfo=UTC), "T0001"),
        PageCursor(None, "btcusd-20240501T0300-abc:1@x"),
    ],
)
def test_cursor_round_trips(cursor: PageCursor) -> None:
    token = encode_cursor(cursor)
    assert token.isascii() and "=" not in token and "/" not in token
    assert decode_cursor(token) == cursor


@pytest.mark.parametrize("token", ["", "not-base64!!", "W10", "WyJ4IiwiVCJd", "A" * 2000])
def test_foreign_cursors_are_refused(token: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(token)


def test_page_keys_are_bound() -> None:
    index = key_index(parse_keymap(None))
    assert index["]"] == index["PageDown"] == "next_page"
    assert index["["] == index["PageUp"] == "prev_page"
