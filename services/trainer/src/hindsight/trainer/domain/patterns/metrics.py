"""Held-out metrics of the Pattern-CNN and the embedding's retrieval quality.

Classification: top-1 accuracy, macro F1 (over the classes present in labels or
predictions), per-class PR-AUC (average precision, one-vs-rest; None for a class absent from
the labels), ECE (top-label, 15 equal-width bins) and the MAE of ``pole_katr``.

Retrieval: mAP@10 of same-pattern retrieval. Every window is a query against all the other
held-out windows, ranked by a similarity (cosine for embeddings, minus the Hamming distance
for hashes; ties by index). ``AP@10 = sum_k P@k × rel_k / min(10, n_relevant)`` over the top 10;
queries whose class has no other window are skipped. The headline is the macro mean over
classes (each class's mean AP), so the abundant ``none`` class cannot dominate it.

Baseline: a 64-bit perceptual hash (pHash) of the candle channel: block-average to 32×32,
2-D DCT-II, the 8×8 lowest frequencies; each bit = coefficient > the median of the 63 non-DC
coefficients. Similarity = minus the Hamming distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, f1_score

from hindsight.trainer.domain.jsonsafe import JsonObject, jsonable
from hindsight.trainer.domain.patterns.detectors import CLASSES

__all__ = [
    "ClassificationMetrics",
    "Retrieval",
    "classification_metrics",
    "cosine_similarity",
    "expected_calibration_error",
    "hamming_similarity",
    "map_at_k",
    "phash",
]

ECE_BINS = 15


@dataclass(frozen=True, slots=True)
class ClassificationMetrics:
    """Held-out classification metrics."""

    n: int
    top1: float
    macro_f1: float
    pr_auc: dict[str, float | None]
    ece: float
    pole_mae: float
    pole_mae_with_pole: float | None
    """MAE over windows whose label has a pole (flag, blow-off); None if there are none."""

    def to_json(self) -> JsonObject:
        """JSON-ready (NaN as null)."""
        return dict(
            jsonable(
                {
                    "n": self.n,
                    "top1": self.top1,
                    "macro_f1": self.macro_f1,
                    "pr_auc": self.pr_auc,
                    "ece": self.ece,
                    "pole_mae": self.pole_mae,
                    "pole_mae_with_pole": self.pole_mae_with_pole,
                }
            )
        )


@dataclass(frozen=True, slots=True)
class Retrieval:
    """mAP@k: macro over classes, per class, and the plain mean over queries."""

    macro: float
    micro: float
    per_class: dict[str, float]
    k: int


def expected_calibration_error(probabilities: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Top-label ECE over ``ECE_BINS`` equal-width confidence bins."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((conf * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    ece = 0.0
    for b in range(ECE_BINS):
        m = bins == b
        if m.any():
            ece += float(m.mean()) * abs(float(conf[m].mean()) - float(correct[m].mean()))
    return ece


def classification_metrics(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    pole_pred: npt.ArrayLike,
    pole_true: npt.ArrayLike,
    classes: tuple[str, ...] = CLASSES,
) -> ClassificationMetrics:
    """Top-1, macro F1, per-class PR-AUC, ECE and pole MAE of held-out windows."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or p.shape != (len(y), len(classes)):
        raise ValueError(f"probabilities: expected [{len(y)}, {len(classes)}], got {p.shape}")
    if len(y) == 0:
        raise ValueError("labels: no held-out windows")
    pred = p.argmax(axis=1)
    pr: dict[str, float | None] = {}
    for c, name in enumerate(classes):
        pos = y == c
        pr[name] = float(average_precision_score(pos, p[:, c])) if pos.any() else None
    err = np.abs(np.asarray(pole_pred, dtype=np.float64) - np.asarray(pole_true, np.float64))
    with_pole = np.isin(y, [classes.index(n) for n in ("flag", "blow_off") if n in classes])
    return ClassificationMetrics(
        n=len(y),
        top1=float((pred == y).mean()),
        macro_f1=float(f1_score(y, pred, average="macro", zero_division=0)),
        pr_auc=pr,
        ece=expected_calibration_error(p, y),
        pole_mae=float(err.mean()),
        pole_mae_with_pole=float(err[with_pole].mean()) if with_pole.any() else None,
    )


def cosine_similarity(embed: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Pairwise cosine similarity of row vectors."""
    e = np.asarray(embed, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return np.asarray(e @ e.T, dtype=np.float64)


def _dct_matrix(n: int) -> npt.NDArray[np.float64]:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return np.asarray(m, dtype=np.float64)


def phash(images: npt.ArrayLike, channel: int = 0) -> npt.NDArray[np.bool_]:
    """64-bit pHash of one channel of ``[N, 64, 64, C]`` images: ``[N, 64]`` bits."""
    x = np.asarray(images, dtype=np.float64)[..., channel]
    n, h, w = x.shape
    small = x.reshape(n, 32, h // 32, 32, w // 32).mean(axis=(2, 4))
    d = _dct_matrix(32)
    coef = np.einsum("ij,njk,lk->nil", d, small, d)[:, :8, :8].reshape(n, 64)
    # The DC term only measures overall ink: the median is taken without it, its bit kept.
    med = np.median(coef[:, 1:], axis=1, keepdims=True)
    return np.asarray(coef > med, dtype=np.bool_)


def hamming_similarity(bits: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Minus the pairwise Hamming distance of bit rows (higher = more similar)."""
    b = np.asarray(bits, dtype=np.float64)
    same = b @ b.T + (1 - b) @ (1 - b).T
    return np.asarray(same - b.shape[1], dtype=np.float64)


def map_at_k(
    similarity: npt.ArrayLike,
    labels: npt.ArrayLike,
    k: int = 10,
    classes: tuple[str, ...] = CLASSES,
) -> Retrieval:
    """Same-label retrieval mAP@k from a pairwise similarity matrix (self excluded)."""
    s = np.array(similarity, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    if s.shape != (n, n):
        raise ValueError(f"similarity: expected [{n}, {n}], got {s.shape}")
    np.fill_diagonal(s, -np.inf)
    counts = np.bincount(y, minlength=len(classes))
    # The diagonal (-inf) sorts last: taking at most n - 1 columns leaves the query out.
    order = np.argsort(-s, axis=1, kind="stable")[:, : min(k, n - 1)]
    aps = np.full(n, np.nan)
    for q in range(n):
        relevant = int(counts[y[q]]) - 1
        if relevant <= 0:
            continue
        rel = (y[order[q]] == y[q]).astype(np.float64)
        precision = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        aps[q] = float((precision * rel).sum()) / min(k, relevant)
    per_class = {
        name: float(np.nanmean(aps[y == c]))
        for c, name in enumerate(classes)
        if bool(np.any(~np.isnan(aps[y == c])))
    }
    macro = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    micro = float(np.nanmean(aps)) if bool(np.any(~np.isnan(aps))) else float("nan")
    return Retrieval(macro=macro, micro=micro, per_class=per_class, k=k)
