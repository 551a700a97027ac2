"""Pattern-CNN on EURUSD hourly windows + planted synthetic windows (issue 17).

Trains the playbook CNN on the time-early blocks of both sources (each split by time with a
one-window embargo), then on the time-later test blocks prints: macro F1, top-1, ECE, pole
MAE; mAP@10 of same-pattern retrieval for the trained embedding, a pHash of the candle
channel and the same network with random weights; training time; ONNX Runtime images/s next
to torch's (same threads, batch 64) and the parity. Prints figures; asserts no timing.

Knobs: ``HINDSIGHT_BENCH_PATTERN_STRIDE`` (EURUSD window stride, default 4),
``HINDSIGHT_BENCH_PATTERN_SYNTH`` (planted windows, default 1000),
``HINDSIGHT_BENCH_PATTERN_EPOCHS`` (default 20), ``HINDSIGHT_BENCH_THREADS`` (default 2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
import torch
from backtesting.test import EURUSD

from hindsight.trainer.domain.patterns.bars import Bars
from hindsight.trainer.domain.patterns.dataset import (
    PatternDataset,
    PatternSplits,
    build_windows,
    split_dataset,
)
from hindsight.trainer.domain.patterns.detectors import CLASSES
from hindsight.trainer.domain.patterns.metrics import (
    classification_metrics,
    cosine_similarity,
    hamming_similarity,
    map_at_k,
    phash,
)
from hindsight.trainer.domain.patterns.network import PatternCNN
from hindsight.trainer.domain.patterns.onnx_export import (
    INPUT,
    OUTPUTS,
    check_parity,
    export_pattern_onnx,
    onnx_session,
)
from hindsight.trainer.domain.patterns.synthetic import planted_series
from hindsight.trainer.domain.patterns.train import TrainConfig, predict, train

pytestmark = pytest.mark.bench

STRIDE = int(os.environ.get("HINDSIGHT_BENCH_PATTERN_STRIDE", "4"))
SYNTH = int(os.environ.get("HINDSIGHT_BENCH_PATTERN_SYNTH", "1000"))
EPOCHS = int(os.environ.get("HINDSIGHT_BENCH_PATTERN_EPOCHS", "20"))
THREADS = int(os.environ.get("HINDSIGHT_BENCH_THREADS", "2"))
HOUR = timedelta(hours=1)


def _eurusd() -> PatternSplits:
    bars = Bars.from_arrays(
        open=EURUSD.Open,
        high=EURUSD.High,
        low=EURUSD.Low,
        close=EURUSD.Close,
        volume=EURUSD.Volume,
    )
    ts = EURUSD.index.values.astype("datetime64[us]").astype(np.int64)
    return split_dataset(build_windows(bars, ts, stride=STRIDE), bar_interval=HOUR)


def _synthetic() -> PatternSplits:
    rng = np.random.default_rng(17)
    bars, ends = planted_series([CLASSES[i % len(CLASSES)] for i in range(SYNTH)], rng)
    ts = np.arange(len(bars), dtype=np.int64) * 3_600_000_000
    return split_dataset(build_windows(bars, ts, ends=ends), bar_interval=HOUR)


def _join(a: PatternDataset, b: PatternDataset) -> PatternDataset:
    # Two sources, two clocks: blocks are joined, not re-sorted across sources.
    return PatternDataset(
        images=np.concatenate([a.images, b.images]),
        labels=np.concatenate([a.labels, b.labels]),
        pole_katr=np.concatenate([a.pole_katr, b.pole_katr]),
        confidence=np.concatenate([a.confidence, b.confidence]),
        ts=np.concatenate([a.ts, b.ts]),
    )


def _rate(fn: Callable[[np.ndarray], object], images: np.ndarray, batch: int = 64) -> float:
    fn(images[:batch])
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i : i + batch])
    return len(images) / (time.perf_counter() - start)


def test_bench_pattern_cnn() -> None:
    t0 = time.perf_counter()
    real, synth = _eurusd(), _synthetic()
    build_s = time.perf_counter() - t0
    train_set = _join(real.train, synth.train)
    validation = _join(real.validation, synth.validation)
    test = _join(real.test, synth.test)
    counts = {
        c: int(n) for c, n in zip(CLASSES, np.bincount(train_set.labels, minlength=5), strict=True)
    }
    print(
        f"\nwindows: train {len(train_set)} validation {len(validation)} test {len(test)} "
        f"(EURUSD test {len(real.test)}); built in {build_s:.1f} s; train labels {counts}"
    )

    cfg = TrainConfig(epochs=EPOCHS, num_threads=THREADS)
    trained = train(train_set, validation, cfg)
    print(
        f"training: {trained.seconds:.1f} s, {trained.epochs_run} epochs (best "
        f"{trained.best_epoch}), {trained.seconds / trained.epochs_run:.2f} s/epoch, "
        f"T = {trained.temperature:.3f}, CPU threads {THREADS}"
    )

    for name, block in (("all", test), ("EURUSD", real.test), ("synthetic", synth.test)):
        out = predict(trained.model, block.images)
        m = classification_metrics(
            out.probabilities(trained.temperature), block.labels, out.pole_katr, block.pole_katr
        )
        pr = {k: round(v, 3) if v is not None else None for k, v in m.pr_auc.items()}
        print(
            f"[{name}] n {m.n} top-1 {m.top1:.3f} macro F1 {m.macro_f1:.3f} "
            f"ECE {m.ece:.3f} pole MAE {m.pole_mae:.2f} (poles {m.pole_mae_with_pole}) "
            f"PR-AUC {pr}"
        )

    torch.manual_seed(123)
    random_net = PatternCNN(len(CLASSES), cfg.widths)
    for name, block in (("all", test), ("EURUSD", real.test)):
        cnn = map_at_k(cosine_similarity(predict(trained.model, block.images).embed), block.labels)
        ph = map_at_k(hamming_similarity(phash(block.images)), block.labels)
        rnd = map_at_k(cosine_similarity(predict(random_net, block.images).embed), block.labels)
        print(
            f"[{name}] mAP@10 (macro over classes): trained {cnn.macro:.3f} pHash "
            f"{ph.macro:.3f} random weights {rnd.macro:.3f}; micro {cnn.micro:.3f} / "
            f"{ph.micro:.3f} / {rnd.micro:.3f}"
        )

    graph = export_pattern_onnx(trained)
    parity = check_parity(graph, trained, test.images)
    session = onnx_session(graph, threads=THREADS)
    images = np.ascontiguousarray(
        np.tile(test.images, (max(1, 2048 // len(test)) + 1, 1, 1, 1))[:2048]
    )
    torch.set_num_threads(THREADS)
    ort_rate = _rate(lambda x: session.run(list(OUTPUTS), {INPUT: x}), images)
    torch_rate = _rate(lambda x: predict(trained.model, x, batch_size=64), images)
    print(
        f"inference (batch 64, {THREADS} threads): ONNX Runtime {ort_rate:,.0f} images/s, "
        f"torch {torch_rate:,.0f} images/s ({ort_rate / torch_rate:.2f}x); parity max |diff| "
        f"{parity.worst:.2e} over {parity.n} windows"
    )
