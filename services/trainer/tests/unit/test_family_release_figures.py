"""What the registry gates a family release on: the quantile members' baseline pinball loss,
the release's recommendation and its production comparison (trainer side, no I/O)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from hindsight.common.family import FamilyCard
from hindsight.registry.domain.family import evaluate_family_gates
from hindsight.registry.domain.gates import GatePolicy, headline
from hindsight.trainer.domain.family import (
    FamilyConfig,
    FamilyRelease,
    ProductionComparison,
    family_recommendation,
    train_family,
    with_production,
)
from hindsight.trainer.domain.kinds import Block, FittedModel, QuantileKind
from hindsight.trainer.domain.kinds.base import float32_thresholds
from hindsight.trainer.domain.kinds.quantile import coverage_error, pinball_loss
from hindsight.trainer.domain.splits import SplitConfig
from hindsight.trainer.domain.synthetic import make_family_frame
from hindsight.trainer.domain.training import TrainingParams

pytestmark = pytest.mark.unit

PARAMS = TrainingParams(
    num_threads=1,
    num_boost_round=60,
    early_stopping_rounds=15,
    learning_rate=0.1,
    num_leaves=4,
    bootstrap_resamples=0,
    split=SplitConfig(cv_folds=0),
)


@pytest.fixture(scope="module")
def release() -> FamilyRelease:
    frame = make_family_frame(6000, clusters_differ=True, seed=3)
    return train_family(frame, FamilyConfig(params=PARAMS, expert_resamples=100))


def test_baseline_pinball_is_the_constant_training_quantile_on_the_test_rows() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 3))
    y = 2.0 * x[:, 0] + rng.normal(size=3000)
    train, valid = Block(x[:2000], y[:2000]), Block(x[2000:2500], y[2000:2500])
    test = Block(x[2500:], y[2500:])
    kind = QuantileKind(alphas=(0.3, 0.7), served_alpha=0.7)
    model = kind.fit(train, valid, PARAMS, feature_names=["a", "b", "c"])
    metrics = kind.evaluate(model, test, PARAMS)
    for alpha in kind.alphas:
        figures = metrics["per_alpha"][f"{alpha:g}"]
        constant = float(np.quantile(train.y, alpha))
        assert figures["baseline_quantile"] == pytest.approx(constant)
        expected = pinball_loss(test.y, np.full(len(test), constant), alpha)
        assert figures["baseline_pinball"] == pytest.approx(expected)
        # y moves with a feature: the model beats the constant by a wide margin.
        assert figures["pinball"] < 0.8 * figures["baseline_pinball"]
    assert kind.gate_figures(metrics)["baseline_pinball"] == pytest.approx(
        metrics["per_alpha"]["0.7"]["baseline_pinball"]
    )


def test_a_sensible_release_passes_the_registrys_production_gates(release) -> None:
    card_json = release.card.model_dump(mode="json")
    card = FamilyCard.model_validate(card_json)
    checks = evaluate_family_gates(card, headline(card_json), GatePolicy(), current_production=None)
    failed = [c.reason for c in checks if not c.passed]
    assert failed == []
    assert any(c.name == "risk.pinball" and c.passed for c in checks)
    assert release.card.metrics["headline"]["recommendation"] == "PROMOTE"
    assert release.card.metrics["headline"]["production_compared"] is False


def test_production_comparison_feeds_the_registrys_margin_gate(release) -> None:
    auc = release.card.metrics["headline"]["roc_auc"]
    policy = GatePolicy()
    for prod_auc, passes, decision in (
        (auc - 0.05, True, "PROMOTE"),
        (auc + 0.05, False, "MONITOR"),
    ):
        compared = with_production(release, ProductionComparison("v1_0_0", prod_auc, "compared"))
        card_json = compared.card.model_dump(mode="json")
        h = headline(card_json)
        assert h["production_compared"] is True and h["production_version"] == "v1_0_0"
        assert h["recommendation"] == decision
        checks = evaluate_family_gates(
            FamilyCard.model_validate(card_json), h, policy, current_production="v1_0_0"
        )
        [margin] = [c for c in checks if c.name == "not_worse_than_production"]
        assert margin.passed is passes, margin.reason


def test_an_uncomparable_production_is_said_and_monitored(release) -> None:
    note = "production v1_0_0 has another feature schema; not comparable"
    compared = with_production(release, ProductionComparison("v1_0_0", None, note))
    head = compared.card.metrics["headline"]
    assert head["production_compared"] is False and head["production_note"] == note
    assert head["recommendation"] == "MONITOR"
    assert compared.card.metrics["production"] is None


def test_recommendation_rejects_a_head_without_skill(release) -> None:
    head = dict(release.card.metrics["headline"])
    assert family_recommendation(head, None)["decision"] == "PROMOTE"
    worse = {**head, "rr_pinball": head["rr_baseline_pinball"] * 1.1}
    detail = family_recommendation(worse, None)
    assert detail["decision"] == "REJECT" and any("rr: pinball" in r for r in detail["reasons"])
    blind = family_recommendation({**head, "roc_auc": 0.5}, None)
    assert blind["decision"] == "REJECT"
    off = family_recommendation({**head, "risk_coverage_error": 0.2}, None)
    assert off["decision"] == "REJECT" and any("risk: coverage" in r for r in off["reasons"])


def test_coverage_error_is_zero_for_a_quantile_on_an_atom_and_plain_off_the_atom() -> None:
    y = np.array([0.0] * 7 + [-1.0, 1.0, 2.0])
    # 0.5 lies in [Pr[y < 0], Pr[y <= 0]] = [0.1, 0.8]: 0 is a right median.
    assert coverage_error(y, np.zeros(10), 0.5) == 0.0
    assert coverage_error(y, np.zeros(10), 0.9) == pytest.approx(0.1)
    continuous = np.arange(10.0)
    assert coverage_error(continuous, np.full(10, 6.0), 0.5) == pytest.approx(0.1)  # 6 of 10 below


def test_thresholds_are_rounded_down_to_float32_so_onnx_takes_the_same_branch() -> None:
    # Two adjacent float32 values: LightGBM's split lies between them in double, and the
    # nearest float32 of that midpoint may be the upper value (ONNX would send it left).
    lo = np.float32(5.0 / 3.0)
    hi = np.nextafter(lo, np.float32(np.inf))
    x = np.repeat(np.array([[lo], [hi]], dtype=np.float64), 200, axis=0)
    y = np.where(x[:, 0] > float(lo), 10.0, 0.0) + np.random.default_rng(1).normal(size=400)
    booster = lgb.train(
        {"objective": "quantile", "alpha": 0.5, "verbose": -1, "min_data_in_leaf": 5},
        lgb.Dataset(x, y),
        num_boost_round=5,
    )
    fixed = lgb.Booster(model_str=float32_thresholds(booster.model_to_string()))
    thresholds = fixed.trees_to_dataframe()["threshold"].dropna().to_numpy()
    assert len(thresholds) and np.all(thresholds.astype(np.float32) == thresholds)
    np.testing.assert_array_equal(fixed.predict(x), booster.predict(x))
    kind = QuantileKind(alphas=(0.5,), served_alpha=0.5)
    model = FittedModel(
        kind="quantile",
        boosters=[fixed],
        feature_names=["f"],
        alphas=[0.5],
        served_alpha=0.5,
        value_range=(-100.0, 100.0),
    )
    assert kind.check_parity(kind.export(model), model, x, tolerance=1e-5)["passed"]
