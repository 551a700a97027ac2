"""Gates of a family release: every served member passes its own, or the release is blocked.

A family release (``hindsight.common.family``) is registered under ``model_name`` = the family
and promoted as one unit, so its gates are the members' gates plus the release-wide ones
(not worse than production, the trainer's verdict: :func:`~.gates.release_checks`, read from
the card's release headline ``metrics``). Every check of a member is named
``<member>.<gate>`` and its reason starts with ``member <member>:``, so a blocked release
says which member failed which gate (``member entry_M: roc_auc 0.51 < 0.55``).

Served members are gated: ``entry_pooled`` (it answers requests without a cluster), the entry
members ``entry_routing`` names, and the quantile heads' members. A cluster expert that lost
to the pooled model on the time-later block is in the release but answers nothing: it gets
one passed check saying so.

Metrics read from a member's ``metrics`` (the first layout found; missing numbers fail
closed):

- binary (entry) members, on the test block: ``test.roc_auc``; ``test.ece``
  (``test.calibration.ece``); ``test.rows`` (``test.n``); ``test.p_min`` and ``test.p_max``,
  the smallest and largest served probability, both strictly inside (0, 1). A member without
  them passes "never 0 or 1" when its ``calibration.output_clip`` (or ``clip``) is
  ``[lo, hi]`` with ``0 < lo`` and ``hi < 1`` (the graph clips every answer).
- quantile members, on the test block: ``test.n`` (``test.rows``); coverage = Pr[y <= pred]
  per alpha, within ``max_coverage_error`` of each alpha (where ``coverage_below`` =
  Pr[y < pred] is given too: alpha within that much of ``[coverage_below, coverage]``, so a
  quantile sitting on an atom of the target, such as an offset of exactly 0, is right);
  pinball loss at the served alpha no worse than the baseline's (the constant training
  quantile's loss at that alpha) times ``max_pinball_ratio``. Per-alpha figures are read
  from the trainer's ``test.per_alpha["0.7"].{coverage, pinball, baseline_pinball}``, or from
  ``test.{coverage, pinball, baseline_pinball}`` as an object keyed by the alpha
  (``{"0.6": .., "0.7": ..}``; ``q0.7`` / ``alpha_0.7`` keys too), a list in the member's
  ``alphas`` order, or a bare number for a member with one alpha.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from hindsight.common import registry_api
from hindsight.common.family import FamilyCard, FamilyMember
from hindsight.registry.domain.cards import MISSING, dig, first_number, number
from hindsight.registry.domain.gates import (
    GateCheck,
    GatePolicy,
    Headline,
    evaluate_gates,
    release_checks,
)

__all__ = [
    "VersionKind",
    "evaluate_family_gates",
    "evaluate_version_gates",
    "member_checks",
    "served_members",
]

VersionKind = registry_api.VersionKind

_ALPHA_KEY = re.compile(r"^[A-Za-z_]*([0-9]*\.?[0-9]+)$")


def served_members(card: FamilyCard) -> set[str]:
    """Names of the members that answer requests."""
    served = {"entry_pooled", *card.entry_routing.values()}
    served.update(m.name for m in card.members if m.head != "entry")
    return served


def _test(member: FamilyMember, *names: str) -> float | None:
    paths: list[tuple[str, ...]] = []
    for name in names:
        paths += [("test", name), ("test", *name.split(".")), (f"test_{name}",), (name,)]
    return first_number(member.metrics, paths)


def _check(
    member: str,
    gate: str,
    value: float | None,
    threshold: float,
    *,
    at_least: bool,
    label: str | None = None,
) -> GateCheck:
    label = label or gate
    name = f"{member}.{gate}"
    if value is None:
        return GateCheck(
            name, False, None, threshold, f"member {member}: {label} missing from metrics.json"
        )
    ok = value >= threshold if at_least else value <= threshold
    op = (">=" if ok else "<") if at_least else ("<=" if ok else ">")
    return GateCheck(
        name, ok, value, threshold, f"member {member}: {label} {value:g} {op} {threshold:g}"
    )


def _rows(member: FamilyMember, policy: GatePolicy) -> GateCheck:
    rows = _test(member, "rows", "n", "n_rows")
    return _check(
        member.name, "test_rows", rows, policy.min_test_rows, at_least=True, label="test rows"
    )


def _never_certain(member: FamilyMember) -> GateCheck:
    name = f"{member.name}.p_range"
    p_min, p_max = _test(member, "p_min"), _test(member, "p_max")
    if p_min is not None and p_max is not None:
        ok = 0.0 < p_min and p_max < 1.0
        verdict = "ok" if ok else "fails: never exactly 0 or 1"
        return GateCheck(
            name,
            ok,
            f"[{p_min:g}, {p_max:g}]",
            "(0, 1)",
            f"member {member.name}: test p in [{p_min:g}, {p_max:g}] {verdict}",
        )
    calibration = member.calibration or {}
    clip = dig(calibration, "output_clip")
    clip = dig(calibration, "clip") if clip is MISSING else clip
    if isinstance(clip, Sequence) and not isinstance(clip, str) and len(clip) == 2:
        lo, hi = number(clip[0]), number(clip[1])
        if lo is not None and hi is not None:
            ok = 0.0 < lo and hi < 1.0
            verdict = "ok" if ok else "fails: never exactly 0 or 1"
            return GateCheck(
                name,
                ok,
                f"[{lo:g}, {hi:g}]",
                "(0, 1)",
                f"member {member.name}: answers clipped to [{lo:g}, {hi:g}] {verdict}",
            )
    return GateCheck(
        name,
        False,
        None,
        "(0, 1)",
        f"member {member.name}: p range missing from metrics.json (test.p_min / test.p_max)",
    )


def _per_alpha(value: Any, alphas: Sequence[float]) -> dict[float, float]:
    """A per-alpha figure as ``{alpha: value}`` (alphas rounded to 6 places)."""
    out: dict[float, float] = {}
    if isinstance(value, Mapping):
        found = number(value)
        if found is not None and len(alphas) == 1:
            return {round(alphas[0], 6): found}
        for key, item in value.items():
            match = _ALPHA_KEY.match(str(key))
            figure = number(item)
            if match is not None and figure is not None:
                out[round(float(match[1]), 6)] = figure
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == len(alphas):
            for alpha, item in zip(alphas, value, strict=True):
                figure = number(item)
                if figure is not None:
                    out[round(alpha, 6)] = figure
    else:
        found = number(value)
        if found is not None and len(alphas) == 1:
            out[round(alphas[0], 6)] = found
    return out


def _figure(member: FamilyMember, *names: str) -> dict[float, float]:
    table = dig(member.metrics, "test", "per_alpha")
    for name in names:
        if isinstance(table, Mapping):
            nested = {key: dig(row, name) for key, row in table.items()}
            found = _per_alpha({k: v for k, v in nested.items() if v is not MISSING}, member.alphas)
            if found:
                return found
        for path in (("test", name), (f"test_{name}",), (name,)):
            raw = dig(member.metrics, *path)
            if raw is not MISSING:
                found = _per_alpha(raw, member.alphas)
                if found:
                    return found
    return {}


def _coverage(member: FamilyMember, policy: GatePolicy) -> list[GateCheck]:
    coverage = _figure(member, "coverage")
    # Pr[y < pred], where the trainer writes it: a target with an atom (the offset head's
    # exact zeros) has its right quantile AT the atom, where Pr[y <= pred] jumps past alpha;
    # the quantile is right when alpha lies in [Pr[y < pred], Pr[y <= pred]].
    below = _figure(member, "coverage_below")
    tolerance = policy.max_coverage_error
    checks = []
    for alpha in member.alphas:
        name = f"{member.name}.coverage_{alpha:g}"
        got = coverage.get(round(alpha, 6))
        if got is None:
            checks.append(
                GateCheck(
                    name,
                    False,
                    None,
                    tolerance,
                    f"member {member.name}: coverage at {alpha:g} missing from metrics.json",
                )
            )
            continue
        low = below.get(round(alpha, 6))
        error = abs(got - alpha) if low is None else max(0.0, low - alpha, alpha - got)
        ok = error <= tolerance + 1e-12
        shown = f"{got:g}" if low is None or low == got else f"[{low:g}, {got:g}]"
        checks.append(
            GateCheck(
                name,
                ok,
                got,
                f"{alpha:g} ± {tolerance:g}",
                f"member {member.name}: coverage at {alpha:g} is {shown}, off by {error:.3f} "
                f"{'<=' if ok else '>'} {tolerance:g}",
            )
        )
    return checks


def _pinball(member: FamilyMember, policy: GatePolicy) -> GateCheck:
    alpha = float(member.served_alpha or 0.0)
    name = f"{member.name}.pinball"
    loss = _figure(member, "pinball", "pinball_loss").get(round(alpha, 6))
    base = _figure(member, "baseline_pinball", "pinball_baseline").get(round(alpha, 6))
    if loss is None or base is None:
        missing = "pinball" if loss is None else "baseline_pinball"
        return GateCheck(
            name,
            False,
            loss,
            base,
            f"member {member.name}: {missing} at {alpha:g} missing from metrics.json",
        )
    limit = base * policy.max_pinball_ratio
    ok = loss <= limit
    scale = "" if policy.max_pinball_ratio == 1.0 else f" x {policy.max_pinball_ratio:g}"
    return GateCheck(
        name,
        ok,
        loss,
        limit,
        f"member {member.name}: pinball at {alpha:g} {loss:g} {'<=' if ok else '>'} "
        f"constant-quantile baseline {base:g}{scale}",
    )


def member_checks(member: FamilyMember, policy: GatePolicy) -> list[GateCheck]:
    """Every gate of one member, by its kind."""
    if member.kind == "binary":
        return [
            _check(
                member.name,
                "test_roc_auc",
                _test(member, "roc_auc"),
                policy.min_test_roc_auc,
                at_least=True,
                label="roc_auc",
            ),
            _check(
                member.name,
                "test_ece",
                _test(member, "ece", "calibration.ece"),
                policy.max_ece,
                at_least=False,
                label="ece",
            ),
            _rows(member, policy),
            _never_certain(member),
        ]
    return [_rows(member, policy), *_coverage(member, policy), _pinball(member, policy)]


def evaluate_family_gates(
    card: FamilyCard, h: Headline, policy: GatePolicy, *, current_production: str | None
) -> list[GateCheck]:
    """Every served member's gates, then the release's; missing numbers fail closed."""
    served = served_members(card)
    checks: list[GateCheck] = []
    for member in card.members:
        if member.name in served:
            checks += member_checks(member, policy)
        else:
            checks.append(
                GateCheck(
                    f"{member.name}.served",
                    True,
                    None,
                    None,
                    f"member {member.name}: not served (entry_routing sends its cluster "
                    "elsewhere); not gated",
                )
            )
    return checks + release_checks(h, policy, current_production=current_production)


def evaluate_version_gates(
    kind: VersionKind,
    card: Mapping[str, Any] | None,
    h: Headline,
    policy: GatePolicy,
    *,
    current_production: str | None,
) -> list[GateCheck]:
    """The gates of a version of either kind (a family's read its card's members)."""
    if kind == "family":
        try:
            family = FamilyCard.model_validate(card)
        except ValidationError as exc:  # a card stored under an older contract, say
            reason = " ".join(str(exc).split())[:500]
            return [
                GateCheck("family_card", False, None, None, f"not a valid FamilyCard: {reason}")
            ]
        return evaluate_family_gates(family, h, policy, current_production=current_production)
    return evaluate_gates(h, policy, current_production=current_production)
