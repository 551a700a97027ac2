"""The Pattern-CNN end to end on planted synthetic windows (a small net, a few epochs)."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest
import torch

from hindsight.trainer.domain.patterns.dataset import build_windows, split_dataset
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
    OUTPUTS,
    check_parity,
    export_pattern_onnx,
    metrics_card,
    onnx_session,
)
from hindsight.trainer.domain.patterns.synthetic import planted_series
from hindsight.trainer.domain.patterns.train import TrainConfig, predict, train

pytestmark = pytest.mark.unit
HOUR = 3_600_000_000
CONFIG = TrainConfig(epochs=10, batch_size=32, widths=(8, 16, 32), min_epochs=6, patience=3)


@pytest.fixture(scope="module")
def splits():
    rng = np.random.default_rng(0)
    bars, ends = planted_series([CLASSES[i % 5] for i in range(250)], rng)
    ts = np.arange(len(bars), dtype=np.int64) * HOUR
    return split_dataset(build_windows(bars, ts, ends=ends), bar_interval=timedelta(hours=1))


@pytest.fixture(scope="module")
def trained(splits):
    return train(splits.train, splits.validation, CONFIG)


def test_embedding_beats_phash_and_random_weights(splits, trained) -> None:
    test = splits.test
    cnn = map_at_k(cosine_similarity(predict(trained.model, test.images).embed), test.labels)
    hashed = map_at_k(hamming_similarity(phash(test.images)), test.labels)
    torch.manual_seed(123)
    random_net = PatternCNN(len(CLASSES), CONFIG.widths)
    rand = map_at_k(cosine_similarity(predict(random_net, test.images).embed), test.labels)
    print(f"mAP@10 cnn {cnn.macro:.3f} phash {hashed.macro:.3f} random {rand.macro:.3f}")
    assert cnn.macro >= hashed.macro
    assert cnn.macro >= rand.macro + 0.15


def test_held_out_classification_and_calibration(splits, trained) -> None:
    out = predict(trained.model, splits.test.images)
    m = classification_metrics(
        out.probabilities(trained.temperature),
        splits.test.labels,
        out.pole_katr,
        splits.test.pole_katr,
    )
    print(m)
    chance = 1 / len(CLASSES)
    assert m.macro_f1 > 2 * chance and m.top1 > 2 * chance
    assert 0.0 <= m.ece < 0.25
    assert 0.05 <= trained.temperature <= 20.0
    assert 1 <= trained.best_epoch <= trained.epochs_run <= CONFIG.epochs


def test_onnx_parity_dynamic_batch_and_card(splits, trained) -> None:
    graph = export_pattern_onnx(trained)
    parity = check_parity(graph, trained, splits.test.images)
    assert parity.worst <= 1e-4
    session = onnx_session(graph)
    for n in (1, 7):
        probs, pole, embed = session.run(list(OUTPUTS), {"input": splits.test.images[:n]})
        assert probs.shape == (n, len(CLASSES)) and pole.shape == (n,) and embed.shape == (n, 64)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(embed, axis=1), 1.0, atol=1e-5)
    card = metrics_card(trained, metrics={"top1": 0.5}, parity=parity)
    assert card["class_map"] == {name: i for i, name in enumerate(CLASSES)}
    assert card["calibration"]["temperature"] == trained.temperature
    json.dumps(card)


def test_training_is_deterministic(splits) -> None:
    cfg = TrainConfig(epochs=1, min_epochs=1, batch_size=32, widths=(4, 4, 8))
    small = splits.train.take(np.arange(64))
    a = train(small, splits.validation, cfg)
    b = train(small, splits.validation, cfg)
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    assert a.temperature == b.temperature


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="pole_weight"):
        TrainConfig(pole_weight=-1.0)
