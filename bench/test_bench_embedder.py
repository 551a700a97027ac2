"""Embedder throughput: end to end (png.created published → embedding.created received)
next to a bare open_clip loop (read, decode, preprocess, forward, normalise) over the same
PNGs, model and batch size. Prints both and their ratio (aim >= 0.8); asserts no timings.

Models: ViT-B-32 and the tiny ``hindsight-tiny-clip``, both with random weights (no
pretrained weights can be downloaded here; the cost of a forward pass does not depend on
the weights). The text tower is a stub: only images are measured.
Run with `pytest -m bench bench/test_bench_embedder.py -s`
(HINDSIGHT_BENCH_DEVICE=cuda on a GPU machine; default: auto).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from hindsight.common.broker import STREAM
from hindsight.common.events import PngCreated
from hindsight.embedder.app import Embedder, build_settings
from hindsight.embedder.domain.images import decode_png
from hindsight.embedder.models import TINY_CLIP_ARCH, Models, load_clip, resolve_device

pytestmark = pytest.mark.bench

BATCH = 32
DEVICE = resolve_device(os.environ.get("HINDSIGHT_BENCH_DEVICE", "auto"))
CASES = {
    "ViT-B-32": int(
        os.environ.get("HINDSIGHT_BENCH_VIT_IMAGES", "2048" if DEVICE == "cuda" else "160")
    ),
    TINY_CLIP_ARCH: int(os.environ.get("HINDSIGHT_BENCH_TINY_IMAGES", "1024")),
}


class _NoText:
    name = "none"
    dim = 1

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return np.ones((len(texts), 1), dtype=np.float32)


def _charts(root: Path, n: int) -> list[Path]:
    paths = []
    rng = np.random.default_rng(0)
    for i in range(n):
        image = Image.new("RGB", (800, 500), "white")
        draw = ImageDraw.Draw(image)
        ys = np.cumsum(rng.normal(0, 8, 100)) + 250
        draw.line(
            [(i * 8, int(np.clip(y, 0, 499))) for i, y in enumerate(ys)], fill="blue", width=2
        )
        path = root / f"chart-{i:05d}.png"
        image.save(path, format="PNG")
        paths.append(path)
    return paths


def _bare_forward(model: Any, inputs: list[Any]) -> float:
    """images/s of the forward pass (+ normalise) alone over preprocessed inputs."""
    started = time.perf_counter()
    for i in range(0, len(inputs), BATCH):
        vectors = model.encode_images(inputs[i : i + BATCH])
        assert vectors.shape[0] == len(inputs[i : i + BATCH])
    return len(inputs) / (time.perf_counter() - started)


def _bare_loop(model: Any, paths: list[Path]) -> float:
    """images/s of read → decode → preprocess → forward → normalise, batch by batch."""
    started = time.perf_counter()
    for i in range(0, len(paths), BATCH):
        inputs = [model.preprocess(decode_png(p.read_bytes())) for p in paths[i : i + BATCH]]
        vectors = model.encode_images(inputs)
        assert vectors.shape[0] == len(inputs)
    return len(paths) / (time.perf_counter() - started)


async def _end_to_end(
    models: Models, paths: list[Path], root: Path, nats_url: str, nc: NatsClient
) -> float:
    settings = build_settings(
        nats_url=nats_url,
        image_roots=[root],
        http_port=0,
        batch_size=BATCH,
        batch_timeout_ms=50,
        clip_arch="bench",
        allow_random_weights=True,
    )
    embedder = Embedder(settings, models=models)
    await embedder.start()
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "embedding.created",
        stream=STREAM,
        # Created before publishing starts: it must outlive the publish loop idle.
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.NEW, inactive_threshold=600.0
        ),
    )
    try:
        started = time.perf_counter()
        for path in paths:
            event = PngCreated.create(source="bench", file_path=str(path), run_id="bench")
            await js.publish(
                event.subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.message_id()}
            )
        got = 0
        while got < len(paths):
            try:
                batch = await sub.fetch(256, timeout=1.0)
            except TimeoutError:
                continue
            got += len(batch)
            assert len(json.loads(batch[-1].data)["embedding"]) == models.clip.dim
        return len(paths) / (time.perf_counter() - started)
    finally:
        await sub.unsubscribe()
        await embedder.stop()


@pytest.mark.parametrize("arch", list(CASES))
async def test_bench_embedder_throughput(
    arch: str, nats_url: str, nats_client: NatsClient, jetstream_reset: None, tmp_path: Path
) -> None:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    clip = load_clip(arch=arch, allow_random_weights=True, device=DEVICE)
    models = Models(clip=clip, text=_NoText())
    paths = _charts(tmp_path, CASES[arch])
    _bare_loop(clip, paths[:BATCH])  # warm-up (allocator, kernels)
    bare = _bare_loop(clip, paths)
    forward = _bare_forward(clip, [clip.preprocess(decode_png(p.read_bytes())) for p in paths])
    e2e = await _end_to_end(models, paths, tmp_path, nats_url, nats_client)
    print(
        f"\nembedder {arch} on {DEVICE} ({torch.get_num_threads()} threads), "
        f"{len(paths)} PNGs 800x500, batch {BATCH}:\n"
        f"  bare open_clip forward only     {forward:8.1f} images/s\n"
        f"  bare loop incl. read+decode     {bare:8.1f} images/s\n"
        f"  end to end (event → event)      {e2e:8.1f} images/s\n"
        f"  ratio e2e / forward-only {e2e / forward:.2f}, e2e / bare loop {e2e / bare:.2f}"
    )
