"""Embedder test helpers: a fake CLIP behind the ``ClipModel`` protocol, PNG files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from hindsight.embedder.domain.normalise import l2_normalise


class FakeClip:
    """Deterministic vectors from the pixels / text; records every batch it was given."""

    name = "open_clip:fake:random"
    random_weights = True
    dim = 8

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.fail_on: set[str] = set()

    def preprocess(self, image: Image.Image) -> Any:
        return np.asarray(image.resize((4, 2)), dtype=np.float32).reshape(-1)[: self.dim] + 1.0

    def encode_images(self, inputs: Sequence[Any]) -> NDArray[np.float32]:
        self.batches.append(len(inputs))
        return l2_normalise(np.stack(list(inputs)))

    def encode_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.batches.append(len(texts))
        if self.fail_on.intersection(texts):
            raise RuntimeError("model exploded on " + ",".join(sorted(self.fail_on)))
        rows = [
            np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], dtype=np.uint8)
            for t in texts
        ]
        return l2_normalise(np.stack(rows).astype(np.float32) + 1.0)


@pytest.fixture
def fake_clip() -> FakeClip:
    return FakeClip()


def write_png(path: Path, *, seed: int, size: tuple[int, int] = (320, 200)) -> Path:
    """A small synthetic chart: a line whose shape depends on ``seed``."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    ys = np.cumsum(rng.normal(0, 6, 40)) + size[1] / 2
    points = [(int(i * size[0] / 40), int(np.clip(y, 0, size[1] - 1))) for i, y in enumerate(ys)]
    draw.line(points, fill=(20, 90, 200), width=2)
    draw.rectangle((5, 5, 5 + seed % 50, 15), fill=(200, 30, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


@pytest.fixture
def png_writer() -> Callable[..., Path]:
    return write_png
