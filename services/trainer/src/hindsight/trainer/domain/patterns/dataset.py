"""Windows from a bar series, weak labels, time-ordered blocks with an embargo, class weights.

A sample is the window of 64 bars ending at bar ``end``: its image, the detectors' label,
confidence and ``pole_katr``, and the end bar's time. Blocks reuse ``domain.splits``: the
samples are time-sorted; the embargo drops every earlier-block window that ends less than one
window span (``64 × bar interval``) before the later block's first window, so no training
window shares a bar with a validation or test window.

Pseudo-label expansion (the weak-supervision loop): after a model is trained on the verified
seed set, ``expand_pseudo_labels(dataset, probabilities, threshold)`` takes its calibrated
class probabilities on unlabelled windows and keeps those whose top probability is at least
``threshold`` (e.g. 0.9), labelled with that class and weighted by the probability; the
result is concatenated to the seed set for the next round (``concat``). Verified windows win:
pass ``keep`` to mark windows that must not be relabelled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import numpy.typing as npt

from hindsight.trainer.domain.patterns.bars import WINDOW, Bars
from hindsight.trainer.domain.patterns.detectors import CLASSES, detect_all
from hindsight.trainer.domain.patterns.images import ImageArray, chart_images
from hindsight.trainer.domain.splits import SplitConfig, split_blocks

__all__ = [
    "PatternDataset",
    "PatternSplits",
    "build_windows",
    "class_weights",
    "concat",
    "expand_pseudo_labels",
    "split_dataset",
]

IntArray = npt.NDArray[np.int64]
F32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class PatternDataset:
    """Samples in time order (``ts`` = the window's end bar, epoch µs)."""

    images: ImageArray
    labels: IntArray
    pole_katr: F32Array
    confidence: F32Array
    ts: IntArray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: npt.ArrayLike) -> PatternDataset:
        """The samples at ``idx``."""
        i = np.asarray(idx, dtype=np.int64)
        return PatternDataset(
            self.images[i], self.labels[i], self.pole_katr[i], self.confidence[i], self.ts[i]
        )


@dataclass(frozen=True, slots=True)
class PatternSplits:
    """Time-ordered train / validation / test blocks."""

    train: PatternDataset
    validation: PatternDataset
    test: PatternDataset


def build_windows(
    bars: Bars, ts: npt.ArrayLike, *, stride: int = 1, ends: npt.ArrayLike | None = None
) -> PatternDataset:
    """Every ``stride``-th window (ends from bar 63 on), or those ending at ``ends``."""
    times = np.asarray(ts, dtype=np.int64).reshape(-1)
    if len(times) != len(bars):
        raise ValueError(f"ts: length {len(times)} differs from the bars' {len(bars)}")
    if len(times) > 1 and bool(np.any(np.diff(times) <= 0)):
        raise ValueError("ts: bars must be strictly time ordered")
    if stride < 1:
        raise ValueError(f"stride: must be >= 1, got {stride}")
    idx = (
        np.arange(WINDOW - 1, len(bars), stride, dtype=np.int64)
        if ends is None
        else np.asarray(ends, dtype=np.int64).reshape(-1)
    )
    found = detect_all(bars, idx)
    return PatternDataset(
        images=chart_images(bars, idx),
        labels=np.array([d.label for d in found], dtype=np.int64),
        pole_katr=np.array([d.pole_katr for d in found], dtype=np.float32),
        confidence=np.array([d.confidence for d in found], dtype=np.float32),
        ts=times[idx],
    )


def concat(*parts: PatternDataset) -> PatternDataset:
    """Samples of all ``parts``, re-sorted by time (stable)."""
    ts = np.concatenate([p.ts for p in parts])
    order = np.argsort(ts, kind="stable")
    return PatternDataset(
        images=np.concatenate([p.images for p in parts])[order],
        labels=np.concatenate([p.labels for p in parts])[order],
        pole_katr=np.concatenate([p.pole_katr for p in parts])[order],
        confidence=np.concatenate([p.confidence for p in parts])[order],
        ts=ts[order],
    )


def split_dataset(
    dataset: PatternDataset, *, bar_interval: timedelta, config: SplitConfig | None = None
) -> PatternSplits:
    """Train / validation / test blocks by time, embargoed by one window span."""
    base = config or SplitConfig(embargo_frac=0.0)
    cfg = replace(base, embargo_time=max(base.embargo_time, bar_interval * WINDOW))
    blocks = split_blocks(dataset.ts, dataset.ts, cfg)
    return PatternSplits(
        dataset.take(blocks.train), dataset.take(blocks.validation), dataset.take(blocks.test)
    )


def class_weights(labels: npt.ArrayLike, n_classes: int = len(CLASSES)) -> F32Array:
    """Balanced weights ``n / (C_present × count)``; 0 for a class with no sample."""
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int(np.count_nonzero(counts))
    out = np.zeros(n_classes, dtype=np.float64)
    mask = counts > 0
    out[mask] = len(y) / (present * counts[mask])
    return out.astype(np.float32)


def expand_pseudo_labels(
    dataset: PatternDataset,
    probabilities: npt.ArrayLike,
    threshold: float,
    *,
    keep: npt.ArrayLike | None = None,
) -> PatternDataset:
    """Windows whose top calibrated probability is ``>= threshold``, relabelled by the model.

    ``probabilities`` is ``[N, C]`` for the N windows of ``dataset``; ``keep`` (bool ``[N]``)
    marks verified windows, returned with their own label and confidence. The returned
    confidence of a pseudo-labelled window is the model's top probability; ``pole_katr``
    is kept from the detectors.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(dataset):
        raise ValueError(f"probabilities: expected [{len(dataset)}, C], got {probs.shape}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold: must lie in (0, 1], got {threshold}")
    verified = np.zeros(len(dataset), bool) if keep is None else np.asarray(keep, dtype=bool)
    if verified.shape != (len(dataset),):
        raise ValueError(f"keep: expected [{len(dataset)}] booleans, got {verified.shape}")
    top = probs.max(axis=1)
    chosen = verified | (top >= threshold)
    labels = np.where(verified, dataset.labels, probs.argmax(axis=1)).astype(np.int64)
    confidence = np.where(verified, dataset.confidence, top).astype(np.float32)
    out = replace(dataset, labels=labels, confidence=confidence)
    return out.take(np.flatnonzero(chosen))
