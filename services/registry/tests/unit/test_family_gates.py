"""Gates of a family release: every served member's, named, then the release's (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hindsight.common.family import FamilyCard
from hindsight.registry.domain import (
    GatePolicy,
    evaluate_family_gates,
    evaluate_version_gates,
    gates_passed,
    headline,
    served_members,
)

pytestmark = pytest.mark.unit

POLICY = GatePolicy(
    min_test_roc_auc=0.55, max_ece=0.10, min_test_rows=200, max_worse_than_production=0.01
)
ALPHAS = {"risk": [0.6, 0.7, 0.8], "rr": [0.6], "offset": [0.5]}
SERVED = {"risk": 0.7, "rr": 0.6, "offset": 0.5}


def entry(name: str, **test: Any) -> dict[str, Any]:
    metrics = {"roc_auc": 0.66, "ece": 0.03, "rows": 900, "p_min": 0.02, "p_max": 0.97}
    metrics.update(test)
    cluster = name.removeprefix("entry_")
    return {
        "name": name,
        "head": "entry",
        "kind": "binary",
        "target": "y_entry",
        "version": "v1_0_0",
        "file": f"{name}.onnx",
        "sha256": "a" * 64,
        "features": ["f1", "f2"],
        "output": "probabilities",
        "cluster": cluster if cluster in {"H", "M", "L"} else None,
        "metrics": {"test": metrics},
    }


def quantile(head: str, **test: Any) -> dict[str, Any]:
    alphas = ALPHAS[head]
    metrics: dict[str, Any] = {
        "rows": 900,
        "coverage": {str(a): a + 0.01 for a in alphas},
        "pinball": {str(a): 0.30 for a in alphas},
        "baseline_pinball": {str(a): 0.40 for a in alphas},
    }
    metrics.update(test)
    return {
        "name": head,
        "head": head,
        "kind": "quantile",
        "target": {"risk": "sl_katr", "rr": "rr_target", "offset": "offset_katr"}[head],
        "version": "v1_0_0",
        "file": f"{head}.onnx",
        "sha256": "b" * 64,
        "features": ["f1", "f2"],
        "output": "quantiles",
        "alphas": alphas,
        "served_alpha": SERVED[head],
        "metrics": {"test": metrics},
    }


def family(
    *,
    entries: dict[str, dict[str, Any]] | None = None,
    quantiles: dict[str, dict[str, Any]] | None = None,
    routing: dict[str, str] | None = None,
    release: dict[str, Any] | None = None,
) -> FamilyCard:
    entries = entries or {}
    quantiles = quantiles or {}
    members = [
        entry(n, **entries.get(n, {})) for n in ("entry_H", "entry_M", "entry_L", "entry_pooled")
    ]
    members += [quantile(h, **quantiles.get(h, {})) for h in ("risk", "rr", "offset")]
    return FamilyCard.model_validate(
        {
            "family": "playbook",
            "version": "v1_0_0",
            "training_run_id": "run-1",
            "created_at": datetime(2026, 12, 8, tzinfo=UTC),
            "feature_schema_version": 1,
            "features": ["f1", "f2"],
            "members": members,
            "entry_routing": routing or {"H": "entry_H", "M": "entry_M", "L": "entry_L"},
            "metrics": release
            if release is not None
            else {
                "test": {"roc_auc": 0.66, "ece": 0.03, "rows": 2700},
                "production": None,
                "recommendation": "PROMOTE",
            },
        }
    )


def gates(card: FamilyCard, current_production: str | None = None) -> list[Any]:
    dumped = card.model_dump(mode="json")
    return evaluate_family_gates(
        card, headline(dumped), POLICY, current_production=current_production
    )


def failing(checks: list[Any]) -> dict[str, str]:
    return {c.name: c.reason for c in checks if not c.passed}


def test_a_good_release_passes_every_member_and_release_gate() -> None:
    checks = gates(family())
    assert gates_passed(checks), failing(checks)
    names = {c.name for c in checks}
    for member in ("entry_H", "entry_M", "entry_L", "entry_pooled"):
        assert {f"{member}.test_roc_auc", f"{member}.test_ece", f"{member}.p_range"} <= names
    assert {"risk.coverage_0.6", "risk.coverage_0.7", "risk.coverage_0.8", "risk.pinball"} <= names
    assert {"rr.coverage_0.6", "rr.pinball", "offset.coverage_0.5", "offset.test_rows"} <= names
    assert {"not_worse_than_production", "recommendation"} <= names


def test_one_weak_entry_member_blocks_the_release_and_is_named() -> None:
    checks = gates(family(entries={"entry_M": {"roc_auc": 0.51}}))
    assert not gates_passed(checks)
    assert failing(checks) == {"entry_M.test_roc_auc": "member entry_M: roc_auc 0.51 < 0.55"}


@pytest.mark.parametrize(
    ("test", "gate", "reason"),
    [
        ({"ece": 0.12}, "test_ece", "member entry_pooled: ece 0.12 > 0.1"),
        ({"rows": 150}, "test_rows", "member entry_pooled: test rows 150 < 200"),
        ({"p_max": 1.0}, "p_range", "member entry_pooled: test p in [0.02, 1] fails"),
        ({"p_min": 0.0}, "p_range", "member entry_pooled: test p in [0, 0.97] fails"),
    ],
)
def test_each_entry_gate_fails_alone(test: dict[str, Any], gate: str, reason: str) -> None:
    found = failing(gates(family(entries={"entry_pooled": test})))
    assert list(found) == [f"entry_pooled.{gate}"]
    assert found[f"entry_pooled.{gate}"].startswith(reason)


def test_a_clipping_calibration_is_enough_when_the_test_range_is_not_written() -> None:
    card = family()
    data = card.model_dump(mode="json")
    pooled = next(m for m in data["members"] if m["name"] == "entry_pooled")
    del pooled["metrics"]["test"]["p_min"], pooled["metrics"]["test"]["p_max"]
    pooled["calibration"] = {"method": "platt", "clip": [1e-4, 1 - 1e-4]}
    assert gates_passed(gates(FamilyCard.model_validate(data)))
    pooled["calibration"] = {"method": "isotonic"}
    assert failing(gates(FamilyCard.model_validate(data))) == {
        "entry_pooled.p_range": "member entry_pooled: p range missing from metrics.json "
        "(test.p_min / test.p_max)"
    }


def test_quantile_coverage_off_by_more_than_three_points_fails_at_that_alpha() -> None:
    coverage = {"0.6": 0.61, "0.7": 0.64, "0.8": 0.80}
    found = failing(gates(family(quantiles={"risk": {"coverage": coverage}})))
    assert found == {
        "risk.coverage_0.7": "member risk: coverage at 0.7 is 0.64, off by 0.060 > 0.03"
    }


def test_coverage_exactly_three_points_off_passes() -> None:
    assert gates_passed(gates(family(quantiles={"rr": {"coverage": {"0.6": 0.63}}})))


def test_pinball_worse_than_the_constant_quantile_baseline_fails() -> None:
    found = failing(gates(family(quantiles={"offset": {"pinball": [0.45]}})))
    assert found == {
        "offset.pinball": "member offset: pinball at 0.5 0.45 > constant-quantile baseline 0.4"
    }


def test_a_looser_pinball_ratio_lets_it_through() -> None:
    card = family(quantiles={"offset": {"pinball": [0.45]}})
    relaxed = GatePolicy(max_pinball_ratio=1.2)
    checks = evaluate_family_gates(
        card, headline(card.model_dump(mode="json")), relaxed, current_production=None
    )
    assert "offset.pinball" not in failing(checks)


def test_per_alpha_figures_in_list_and_keyed_layouts_read_the_same() -> None:
    listed = family(quantiles={"risk": {"coverage": [0.6, 0.7, 0.8]}})
    keyed = family(quantiles={"risk": {"coverage": {"q0.6": 0.6, "q0.7": 0.7, "q0.8": 0.8}}})
    assert gates_passed(gates(listed)) and gates_passed(gates(keyed))


def test_missing_quantile_metrics_fail_closed_naming_the_member() -> None:
    found = failing(gates(family(quantiles={"rr": {"coverage": None, "baseline_pinball": {}}})))
    assert found == {
        "rr.coverage_0.6": "member rr: coverage at 0.6 missing from metrics.json",
        "rr.pinball": "member rr: baseline_pinball at 0.6 missing from metrics.json",
    }


def test_an_expert_that_lost_to_pooled_is_not_served_and_not_gated() -> None:
    card = family(
        entries={"entry_L": {"roc_auc": 0.49}},
        routing={"H": "entry_H", "M": "entry_M", "L": "entry_pooled"},
    )
    assert served_members(card) == {"entry_H", "entry_M", "entry_pooled", "risk", "rr", "offset"}
    checks = gates(card)
    assert gates_passed(checks), failing(checks)
    assert any(c.name == "entry_L.served" and "not gated" in c.reason for c in checks)


def test_the_release_gates_read_the_release_headline() -> None:
    card = family(release={"test": {"roc_auc": 0.66}, "recommendation": "REJECT"})
    found = failing(gates(card, current_production="v0_9_0"))
    assert set(found) == {"not_worse_than_production", "recommendation"}
    assert "production is v0_9_0" in found["not_worse_than_production"]


def test_evaluate_version_gates_dispatches_on_the_kind() -> None:
    card = family(entries={"entry_H": {"roc_auc": 0.5}}).model_dump(mode="json")
    family_checks = evaluate_version_gates(
        "family", card, headline(card), POLICY, current_production=None
    )
    assert "entry_H.test_roc_auc" in failing(family_checks)
    model_checks = evaluate_version_gates(
        "model", None, headline(card), POLICY, current_production=None
    )
    assert {c.name for c in model_checks} >= {"test_roc_auc", "test_ece", "test_rows"}


def test_the_trainers_layout_per_alpha_table_and_output_clip_is_read() -> None:
    data = family().model_dump(mode="json")
    for member in data["members"]:
        if member["kind"] == "binary":
            member["metrics"] = {"test": {"n": 900, "roc_auc": 0.7, "ece": 0.04}}
            member["calibration"] = {"method": "sigmoid", "output_clip": [1e-4, 1 - 1e-4]}
        else:
            table = {
                f"{a:g}": {"pinball": 0.3, "coverage": a - 0.02, "baseline_pinball": 0.35}
                for a in member["alphas"]
            }
            member["metrics"] = {"test": {"n": 900, "per_alpha": table}}
    checks = gates(FamilyCard.model_validate(data))
    assert gates_passed(checks), failing(checks)
    risk = next(m for m in data["members"] if m["name"] == "risk")
    del risk["metrics"]["test"]["per_alpha"]["0.7"]["baseline_pinball"]
    risk["metrics"]["test"]["per_alpha"]["0.8"]["coverage"] = 0.9
    assert failing(gates(FamilyCard.model_validate(data))) == {
        "risk.coverage_0.8": "member risk: coverage at 0.8 is 0.9, off by 0.100 > 0.03",
        "risk.pinball": "member risk: baseline_pinball at 0.7 missing from metrics.json",
    }


def test_a_stored_card_that_is_no_longer_a_family_card_fails_its_gate() -> None:
    checks = evaluate_version_gates(
        "family", {"family": "playbook"}, {}, POLICY, current_production=None
    )
    assert [(c.name, c.passed) for c in checks] == [("family_card", False)]
    assert checks[0].reason.startswith("not a valid FamilyCard: ")


def test_a_quantile_on_an_atom_of_the_target_passes_when_alpha_lies_in_its_step() -> None:
    """The offset head's target is mostly exactly 0: its middle quantiles are 0, where
    Pr[y <= q] is 1.0 and Pr[y < q] 0.24; alpha in that step is a right quantile."""
    data = family().model_dump(mode="json")
    offset = next(m for m in data["members"] if m["name"] == "offset")
    table = {
        f"{a:g}": {
            "pinball": 0.1,
            "coverage": 1.0,
            "coverage_below": 0.24,
            "baseline_pinball": 0.12,
        }
        for a in offset["alphas"]
    }
    offset["metrics"] = {"test": {"n": 900, "per_alpha": table}}
    assert gates_passed(gates(FamilyCard.model_validate(data))), failing(
        gates(FamilyCard.model_validate(data))
    )
    low = f"{offset['alphas'][0]:g}"
    table[low]["coverage_below"] = float(low) + 0.05  # too many rows below that quantile
    assert failing(gates(FamilyCard.model_validate(data))) == {
        f"offset.coverage_{low}": f"member offset: coverage at {low} is "
        f"[{float(low) + 0.05:g}, 1], off by 0.050 > 0.03"
    }
