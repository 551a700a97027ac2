"""Promotion gates: what a version's ``metrics.json`` must show before production."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hindsight.common.registry_api import GateCheck, Headline
from hindsight.registry.domain.cards import MISSING, dig, first_number, first_text

__all__ = [
    "GateCheck",
    "GatePolicy",
    "Headline",
    "evaluate_gates",
    "gates_passed",
    "headline",
    "release_checks",
]

_PROD_KEYS = ("production", "production_test", "production_metrics", "baseline")


def headline(card: Mapping[str, Any]) -> Headline:
    """The few numbers the gates read from a ``metrics.json``, None when absent.

    Keys: ``test_roc_auc``, ``test_ece``, ``test_rows``, ``production_version``,
    ``production_roc_auc`` (production model on the SAME test block), ``production_compared``
    (True when the trainer compared against a production model, False when it said there
    was none, None when the card does not say), ``recommendation`` (PROMOTE / MONITOR /
    REJECT). Several layouts are accepted; the first listed is the trainer's.
    """
    m = ("metrics",)
    test_rows = first_number(
        card,
        [
            (*m, "test", "rows"),
            (*m, "test", "n"),
            (*m, "test", "n_rows"),
            (*m, "headline", "test_rows"),
            ("row_counts", "test"),
            ("rows", "test"),
            ("split", "test", "rows"),
            ("splits", "test", "rows"),
            (*m, "test_rows"),
            ("test_rows",),
        ],
    )
    production: Any = MISSING
    for key in _PROD_KEYS:
        production = dig(card, *m, key)
        if production is not MISSING:
            break
    if production is MISSING:
        production = dig(card, "production")
    compared: bool | None
    prod_auc: float | None = None
    prod_version: str | None = None
    if production is MISSING:
        compared = None
        prod_auc = first_number(card, [(*m, "production_roc_auc"), (*m, "production_test_roc_auc")])
        prod_version = first_text(card, [(*m, "production_version")])
        if prod_auc is not None:
            compared = True
    elif production is None or production == {}:
        compared = False
    else:
        compared = True
        prod_auc = first_number(
            {"p": production}, [("p", "test", "roc_auc"), ("p", "roc_auc"), ("p", "test_roc_auc")]
        )
        prod_version = first_text({"p": production}, [("p", "version"), ("p", "model_version")])
    recommendation = first_text(
        card,
        [
            ("recommendation",),
            (*m, "recommendation"),
            (*m, "headline", "recommendation"),
            (*m, "trading", "recommendation"),
            ("trading", "recommendation"),
            (*m, "test", "trading", "recommendation"),
        ],
    )
    return {
        "test_roc_auc": first_number(
            card,
            [
                (*m, "test", "roc_auc"),
                (*m, "headline", "roc_auc"),
                (*m, "test_roc_auc"),
                (*m, "roc_auc"),
            ],
        ),
        "test_ece": first_number(
            card,
            [
                (*m, "test", "ece"),
                (*m, "test", "calibration", "ece"),
                (*m, "headline", "ece"),
                (*m, "test_ece"),
                (*m, "ece"),
                (*m, "calibration", "ece"),
            ],
        ),
        "test_rows": int(test_rows) if test_rows is not None else None,
        "production_version": prod_version,
        "production_roc_auc": prod_auc,
        "production_compared": compared,
        "recommendation": recommendation.upper() if recommendation else None,
    }


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """Thresholds of the gates (settings ``HINDSIGHT_REGISTRY_*``)."""

    min_test_roc_auc: float = 0.55
    max_ece: float = 0.10
    min_test_rows: int = 200
    max_worse_than_production: float = 0.01
    require_recommendation: bool = True
    """False: the trainer's trading verdict is shown but does not block (dev stack demo)."""
    max_coverage_error: float = 0.03
    """Family quantile members: |coverage - alpha| allowed on the test block, each alpha."""
    max_pinball_ratio: float = 1.0
    """Family quantile members: pinball loss at the served alpha / the constant-quantile
    baseline's, at most (1.0: no worse than the baseline)."""


def _floor(name: str, value: float | None, threshold: float, *, at_least: bool) -> GateCheck:
    label = name.replace("_", " ")
    if value is None:
        return GateCheck(name, False, None, threshold, f"{label} missing from metrics.json")
    ok = value >= threshold if at_least else value <= threshold
    op = ">=" if at_least else "<="
    verdict = "ok" if ok else "fails"
    return GateCheck(
        name, ok, value, threshold, f"{label} {value:g} {verdict}: needs {op} {threshold:g}"
    )


def _production_margin(
    h: Headline, policy: GatePolicy, current_production: str | None
) -> GateCheck:
    name, margin = "not_worse_than_production", policy.max_worse_than_production
    if current_production is None:
        return GateCheck(name, True, None, margin, "no production version to compare with")
    auc, prod = h.get("test_roc_auc"), h.get("production_roc_auc")
    if h.get("production_compared") is False or prod is None:
        return GateCheck(
            name,
            False,
            None,
            margin,
            f"metrics.json has no production ROC-AUC on the same test block "
            f"(production is {current_production})",
        )
    compared_with = h.get("production_version")
    if compared_with is not None and compared_with != current_production:
        return GateCheck(
            name,
            False,
            None,
            margin,
            f"compared with {compared_with}, but production is now {current_production}",
        )
    if auc is None:
        return GateCheck(name, False, None, margin, "test ROC-AUC missing from metrics.json")
    delta = float(auc) - float(prod)
    ok = delta >= -margin
    return GateCheck(
        name,
        ok,
        round(delta, 6),
        -margin,
        f"ROC-AUC {auc:g} vs production {prod:g} on the same block (delta {delta:+.4f}, "
        f"{'ok' if ok else 'worse than'} allowed -{margin:g})",
    )


def _recommendation(h: Headline, *, required: bool = True) -> GateCheck:
    rec = h.get("recommendation")
    if not required:
        return GateCheck(
            "recommendation",
            True,
            rec,
            "not required",
            f"trainer recommends {rec}; not required (require_recommendation=false)",
        )
    if rec is None:
        return GateCheck("recommendation", False, None, "not REJECT", "no recommendation")
    ok = rec != "REJECT"
    return GateCheck("recommendation", ok, rec, "not REJECT", f"trainer recommends {rec}")


def evaluate_gates(
    h: Headline, policy: GatePolicy, *, current_production: str | None
) -> list[GateCheck]:
    """Every gate's check for a version with headline ``h``; missing numbers fail closed."""
    rows = h.get("test_rows")
    return [
        _floor("test_roc_auc", h.get("test_roc_auc"), policy.min_test_roc_auc, at_least=True),
        _floor("test_ece", h.get("test_ece"), policy.max_ece, at_least=False),
        _floor(
            "test_rows",
            None if rows is None else float(rows),
            policy.min_test_rows,
            at_least=True,
        ),
        *release_checks(h, policy, current_production=current_production),
    ]


def release_checks(
    h: Headline, policy: GatePolicy, *, current_production: str | None
) -> list[GateCheck]:
    """The gates on a release as a whole: not worse than production, the trainer's verdict."""
    return [
        _production_margin(h, policy, current_production),
        _recommendation(h, required=policy.require_recommendation),
    ]


def gates_passed(checks: list[GateCheck]) -> bool:
    """True when every check passed."""
    return all(c.passed for c in checks)
