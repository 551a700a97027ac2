"""Promotion gates and the headline extraction (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from hindsight.registry.domain import GatePolicy, evaluate_gates, gates_passed, headline

pytestmark = pytest.mark.unit

POLICY = GatePolicy(
    min_test_roc_auc=0.55, max_ece=0.10, min_test_rows=200, max_worse_than_production=0.01
)


def card(**metrics: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "test": {"roc_auc": 0.70, "ece": 0.03, "rows": 3000},
        "production": None,
        "trading": {"recommendation": "PROMOTE"},
    }
    base.update(metrics)
    return {"model_name": "m", "version": "v", "metrics": base}


def by_name(checks: list[Any]) -> dict[str, Any]:
    return {c.name: c for c in checks}


def test_a_good_first_model_passes_every_gate() -> None:
    checks = evaluate_gates(headline(card()), POLICY, current_production=None)
    assert gates_passed(checks), [c.reason for c in checks if not c.passed]
    assert {c.name for c in checks} == {
        "test_roc_auc",
        "test_ece",
        "test_rows",
        "not_worse_than_production",
        "recommendation",
    }


@pytest.mark.parametrize(
    ("test", "failing"),
    [
        ({"roc_auc": 0.54, "ece": 0.03, "rows": 3000}, "test_roc_auc"),
        ({"roc_auc": 0.70, "ece": 0.11, "rows": 3000}, "test_ece"),
        ({"roc_auc": 0.70, "ece": 0.03, "rows": 199}, "test_rows"),
    ],
)
def test_each_floor_fails_alone(test: dict[str, Any], failing: str) -> None:
    checks = by_name(evaluate_gates(headline(card(test=test)), POLICY, current_production=None))
    assert [n for n, c in checks.items() if not c.passed] == [failing]
    assert "needs" in checks[failing].reason


def test_floors_are_inclusive_at_the_threshold() -> None:
    h = headline(card(test={"roc_auc": 0.55, "ece": 0.10, "rows": 200}))
    assert gates_passed(evaluate_gates(h, POLICY, current_production=None))


def test_production_margin_on_the_same_block() -> None:
    within = card(production={"version": "p1", "test": {"roc_auc": 0.705}})
    worse = card(production={"version": "p1", "test": {"roc_auc": 0.72}})
    ok = by_name(evaluate_gates(headline(within), POLICY, current_production="p1"))
    bad = by_name(evaluate_gates(headline(worse), POLICY, current_production="p1"))
    assert ok["not_worse_than_production"].passed
    assert not bad["not_worse_than_production"].passed
    assert bad["not_worse_than_production"].value == pytest.approx(-0.02)


def test_production_margin_fails_closed_without_comparison() -> None:
    # Production exists now but the trainer compared with nothing.
    checks = by_name(evaluate_gates(headline(card()), POLICY, current_production="p1"))
    assert not checks["not_worse_than_production"].passed
    assert "no production ROC-AUC" in checks["not_worse_than_production"].reason


def test_production_margin_fails_when_production_changed_since_training() -> None:
    c = card(production={"version": "p0", "test": {"roc_auc": 0.60}})
    checks = by_name(evaluate_gates(headline(c), POLICY, current_production="p1"))
    assert not checks["not_worse_than_production"].passed
    assert "production is now p1" in checks["not_worse_than_production"].reason


def test_reject_recommendation_blocks() -> None:
    c = card(trading={"recommendation": "REJECT"})
    checks = by_name(evaluate_gates(headline(c), POLICY, current_production=None))
    assert not checks["recommendation"].passed
    monitor = card(trading={"recommendation": "monitor"})
    assert gates_passed(evaluate_gates(headline(monitor), POLICY, current_production=None))


def test_recommendation_can_be_shown_without_blocking() -> None:
    from dataclasses import replace

    c = card(trading={"recommendation": "REJECT"})
    relaxed = replace(POLICY, require_recommendation=False)
    checks = by_name(evaluate_gates(headline(c), relaxed, current_production=None))
    assert checks["recommendation"].passed and checks["recommendation"].value == "REJECT"
    assert "not required" in checks["recommendation"].reason


def test_missing_keys_fail_closed_with_reasons() -> None:
    checks = by_name(evaluate_gates(headline({"metrics": {}}), POLICY, current_production=None))
    for name in ("test_roc_auc", "test_ece", "test_rows", "recommendation"):
        assert not checks[name].passed
        assert checks[name].value is None
        assert "missing" in checks[name].reason or "no recommendation" in checks[name].reason


def test_headline_reads_alternative_layouts() -> None:
    flat = {
        "row_counts": {"test": 512},
        "recommendation": "promote",
        "metrics": {
            "test_roc_auc": {"value": 0.66, "ci_low": 0.6, "ci_high": 0.7},
            "calibration": {"ece": 0.05},
            "production_roc_auc": 0.65,
            "production_version": "p1",
        },
    }
    h = headline(flat)
    assert h["test_roc_auc"] == 0.66 and h["test_ece"] == 0.05 and h["test_rows"] == 512
    assert h["production_roc_auc"] == 0.65 and h["production_version"] == "p1"
    assert h["recommendation"] == "PROMOTE" and h["production_compared"] is True


def test_non_numbers_are_missing_not_crashes() -> None:
    h = headline(card(test={"roc_auc": "high", "ece": float("nan"), "rows": True}))
    assert h["test_roc_auc"] is None and h["test_ece"] is None and h["test_rows"] is None


def trainer_card(production: Any) -> dict[str, Any]:
    """The layout services/trainer writes (domain/training.py, metrics dict)."""
    test = {"n": 3000, "roc_auc": 0.71, "roc_auc_ci95": [0.69, 0.73], "ece": 0.02}
    return {
        "row_counts": {"train": 14000, "validation": 3000, "test": 3000},
        "metrics": {
            "test": test,
            "production": production,
            "recommendation": "MONITOR",
            "headline": {"roc_auc": 0.71, "ece": 0.02, "test_rows": 3000},
        },
    }


def test_headline_of_the_trainers_layout() -> None:
    h = headline(trainer_card(None))
    assert (h["test_roc_auc"], h["test_ece"], h["test_rows"]) == (0.71, 0.02, 3000)
    assert h["recommendation"] == "MONITOR" and h["production_compared"] is False
    compared = headline(
        trainer_card({"version": "p1", "test": {"roc_auc": 0.70}, "note": "production p1"})
    )
    assert compared["production_roc_auc"] == 0.70 and compared["production_version"] == "p1"
    assert gates_passed(evaluate_gates(compared, POLICY, current_production="p1"))
    unavailable = headline(trainer_card({"unavailable": "registry unreachable"}))
    checks = by_name(evaluate_gates(unavailable, POLICY, current_production="p1"))
    assert not checks["not_worse_than_production"].passed
