from __future__ import annotations

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.trainer.domain.outcomes import derive_result, resolve_result, threshold_for

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("side", "exit_", "expected"),
    [
        ("buy", 100.6, "win"),
        ("buy", 100.49, "breakeven"),
        ("buy", 100.0, "breakeven"),
        ("buy", 99.5, "breakeven"),
        ("buy", 99.4, "loss"),
        ("sell", 99.4, "win"),
        ("sell", 99.51, "breakeven"),
        ("sell", 100.4, "breakeven"),
        ("sell", 100.6, "loss"),
    ],
)
def test_derive_result_both_sides(side: str, exit_: float, expected: str) -> None:
    assert derive_result(side, 100.0, exit_, 0.005) == expected


def test_thresholds_per_timeframe() -> None:
    thresholds = {"1m": 0.001, "1d": 0.02}
    assert threshold_for("1m", thresholds) == 0.001
    assert threshold_for("1d", thresholds) == 0.02
    assert threshold_for("4h", thresholds) == 0.005
    # A 1 % move wins on 1m but is breakeven on 1d.
    assert derive_result("buy", 100.0, 101.0, threshold_for("1m", thresholds)) == "win"
    assert derive_result("buy", 100.0, 101.0, threshold_for("1d", thresholds)) == "breakeven"


def test_given_result_is_kept_and_not_derived() -> None:
    resolved = resolve_result(
        result="loss",
        side="buy",
        outcome_entry=1.0,
        signal_entry=None,
        exit_price=2.0,
        threshold=0.005,
    )
    assert (resolved.result, resolved.derived) == ("loss", False)


def test_entry_price_may_come_from_the_signal() -> None:
    resolved = resolve_result(
        result=None,
        side="sell",
        outcome_entry=None,
        signal_entry=100.0,
        exit_price=98.0,
        threshold=0.005,
    )
    assert (resolved.result, resolved.derived) == ("win", True)


def test_outcome_before_its_signal_is_pending() -> None:
    resolved = resolve_result(
        result=None,
        side=None,
        outcome_entry=None,
        signal_entry=None,
        exit_price=98.0,
        threshold=0.005,
    )
    assert resolved.result is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"exit_price": None, "outcome_entry": 1.0}, "exit_price"),
        ({"exit_price": 1.0, "outcome_entry": None}, "entry_price"),
    ],
)
def test_underivable_outcome_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        resolve_result(result=None, side="buy", signal_entry=None, threshold=0.005, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_hold_cannot_be_derived() -> None:
    with pytest.raises(InvalidInputError) as info:
        derive_result("hold", 1.0, 2.0, 0.005)
    assert info.value.field == "side"
