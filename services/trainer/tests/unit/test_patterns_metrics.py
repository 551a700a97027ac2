from __future__ import annotations

import numpy as np
import pytest

from hindsight.trainer.domain.patterns.metrics import (
    classification_metrics,
    cosine_similarity,
    expected_calibration_error,
    hamming_similarity,
    map_at_k,
    phash,
)

pytestmark = pytest.mark.unit


def test_perfect_classifier() -> None:
    y = np.array([0, 1, 2, 3, 4, 0, 1])
    p = np.eye(5)[y]
    m = classification_metrics(p, y, np.ones(7), np.ones(7))
    assert m.top1 == 1.0 and m.macro_f1 == 1.0 and m.ece == 0.0 and m.pole_mae == 0.0
    assert all(v == 1.0 for v in m.pr_auc.values())
    assert m.to_json()["pr_auc"]["flag"] == 1.0


def test_ece_of_an_overconfident_model() -> None:
    y = np.array([0, 1] * 50)
    p = np.tile([0.9, 0.1], (100, 1))  # says 0 with 0.9, right half the time
    assert expected_calibration_error(p, y) == pytest.approx(0.4)


def test_shape_checked() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        classification_metrics(np.ones((3, 2)), np.zeros(3, int), np.zeros(3), np.zeros(3))


def test_map_at_k_by_hand() -> None:
    labels = np.array([0, 0, 1, 1])
    # 0 and 1 are close, 2 and 3 are close: perfect retrieval.
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    r = map_at_k(cosine_similarity(emb), labels, k=10)
    assert r.macro == 1.0 and r.micro == 1.0
    # Swapped rows: queries 0 and 1 find their one relevant item 3rd, queries 2 and 3 2nd.
    r = map_at_k(cosine_similarity(emb[[0, 2, 1, 3]]), labels, k=10)
    assert r.micro == pytest.approx((1 / 3 + 1 / 3 + 1 / 2 + 1 / 2) / 4)
    assert r.per_class["flag"] == pytest.approx(1 / 3)


def test_phash_is_64_bits_and_zero_distance_to_itself() -> None:
    rng = np.random.default_rng(0)
    imgs = rng.random((3, 64, 64, 3)).astype(np.float32)
    bits = phash(imgs)
    assert bits.shape == (3, 64) and bits.dtype == np.bool_
    sim = hamming_similarity(bits)
    assert (np.diag(sim) == 0).all() and (sim <= 0).all()
    np.testing.assert_array_equal(phash(imgs * 0.5), bits)  # brightness does not matter
