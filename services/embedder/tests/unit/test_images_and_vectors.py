"""Thumbnails, PNG checks and L2 normalisation."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hindsight.embedder.domain.images import NotAPngError, decode_png, thumbnail_b64
from hindsight.embedder.domain.normalise import l2_normalise

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("size", "expected"), [((1280, 720), (128, 72)), ((90, 400), (29, 128))])
def test_thumbnail_longer_side_is_the_limit(
    tmp_path: Path,
    png_writer: Callable[..., Path],
    size: tuple[int, int],
    expected: tuple[int, int],
) -> None:
    image = decode_png(png_writer(tmp_path / "c.png", seed=1, size=size).read_bytes())
    thumb = Image.open(io.BytesIO(base64.b64decode(thumbnail_b64(image, max_px=128))))
    assert thumb.format == "PNG"
    assert thumb.size == expected


def test_small_images_are_not_enlarged(tmp_path: Path, png_writer: Callable[..., Path]) -> None:
    image = decode_png(png_writer(tmp_path / "s.png", seed=2, size=(60, 40)).read_bytes())
    thumb = Image.open(io.BytesIO(base64.b64decode(thumbnail_b64(image, max_px=128))))
    assert thumb.size == (60, 40)


def test_non_png_and_truncated_png_are_refused(
    tmp_path: Path, png_writer: Callable[..., Path]
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buffer, format="JPEG")
    with pytest.raises(NotAPngError, match="bad signature"):
        decode_png(buffer.getvalue())
    data = png_writer(tmp_path / "t.png", seed=3).read_bytes()
    with pytest.raises(NotAPngError, match="undecodable"):
        decode_png(data[: len(data) // 2])


def test_rows_are_scaled_to_unit_length_and_zero_stays_zero() -> None:
    rows = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 1.0]]))
    assert rows.dtype == np.float32
    assert np.allclose(rows[0], [0.6, 0.8])
    assert np.allclose(rows[1], [0.0, 0.0])
    assert np.allclose(np.linalg.norm(rows[[0, 2]], axis=1), 1.0)
