"""Reference parsing, float32 binning and PSI of :mod:`hindsight.common.drift`."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest

from hindsight.common.drift import (
    EPSILON,
    bin_counts,
    bin_indices,
    out_of_range,
    parse_reference,
    parse_references,
    psi,
    sample_psi,
)
from hindsight.common.errors import InvalidInputError

pytestmark = pytest.mark.unit


def entry(column: np.ndarray) -> dict[str, Any]:
    """One feature's reference as the trainer writes it (decile edges, counts, missing)."""
    present = column[~np.isnan(column)]
    if len(present) == 0:
        return {"edges": [], "counts": [], "missing": len(column)}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, 11)))
    inner = edges[1:-1]
    counts = np.bincount(np.searchsorted(inner, present, side="right"), minlength=len(inner) + 1)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "missing": int(len(column) - len(present)),
    }


def normal(n: int, *, seed: int, missing: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[rng.random(n) < missing] = np.nan
    return x


def test_psi_formula_on_known_shares() -> None:
    actual = np.array([[0.5, 0.5], [0.25, 0.75], [0.0, 1.0]])
    expected = np.full((3, 2), 0.5)
    got = psi(actual, expected)
    assert got[0] == 0.0
    assert got[1] == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5))
    # An empty bin counts as EPSILON, so the PSI stays finite (and large).
    floor = (EPSILON - 0.5) * math.log(EPSILON / 0.5) + 0.5 * math.log(2)
    assert got[2] == pytest.approx(floor)


def test_identical_distribution_gives_psi_near_zero() -> None:
    ref = parse_reference("a", entry(normal(20_000, seed=1, missing=0.1)))
    assert ref.value_bins == 10 and ref.missing_share == pytest.approx(0.1, abs=0.01)
    assert float(psi(ref.expected, ref.expected)) == 0.0
    assert sample_psi(ref, normal(2000, seed=2, missing=0.1)) < 0.02


def test_shifted_feature_is_over_the_threshold() -> None:
    ref = parse_reference("a", entry(normal(20_000, seed=1)))
    assert sample_psi(ref, normal(2000, seed=3) + 1.0) > 0.2
    # A change in the missing share alone counts too (10 % → 60 %).
    ref = parse_reference("c", entry(normal(20_000, seed=1, missing=0.1)))
    assert sample_psi(ref, normal(2000, seed=4, missing=0.6)) > 0.2


def test_bins_follow_the_written_rule_and_nan_is_the_missing_bin() -> None:
    ref = parse_reference("a", {"edges": [0, 1, 2, 3], "counts": [1, 1, 1], "missing": 1})
    x = np.array([-5.0, 0.0, 0.99, 1.0, 2.5, 3.0, 9.0, np.nan])
    assert bin_indices(ref, x).tolist() == [0, 0, 0, 1, 2, 2, 2, 3]
    assert bin_counts(ref, x).tolist() == [3, 1, 3, 1]
    assert out_of_range(ref, x).tolist() == [True, False, False, False, False, False, True, False]
    assert ref.expected.tolist() == [0.25, 0.25, 0.25, 0.25]
    assert (ref.low, ref.high, ref.missing_bin) == (0.0, 3.0, 3)


def test_float64_and_float32_values_bin_alike_even_on_edges() -> None:
    # Deciles of a discrete feature are its values; float32(0.7) < 0.7, so binning the
    # scorer's float32 rows against float64 edges would move every 0.7 down a bin.
    train = np.random.default_rng(5).integers(1, 10, size=20_000) / 10.0
    ref = parse_reference("d", entry(train))
    assert 0.7 in entry(train)["edges"]
    live = np.random.default_rng(6).integers(1, 10, size=2000) / 10.0
    assert bin_indices(ref, live).tolist() == bin_indices(ref, live.astype(np.float32)).tolist()
    assert sample_psi(ref, live) == sample_psi(ref, live.astype(np.float32))
    assert sample_psi(ref, live.astype(np.float32)) < 0.02
    assert not out_of_range(ref, np.array([0.1, 0.9], dtype=np.float32)).any()


def test_constant_feature_has_one_value_bin() -> None:
    ref = parse_reference("k", entry(np.full(100, 2.5)))
    assert ref.value_bins == 1 and ref.low == ref.high == 2.5
    assert sample_psi(ref, np.full(50, 2.5)) == 0.0
    assert out_of_range(ref, np.array([2.5, 2.6])).tolist() == [False, True]


def test_all_missing_reference_is_usable() -> None:
    ref = parse_reference("m", entry(np.full(100, np.nan)))
    assert ref.expected.tolist() == [0.0, 1.0] and ref.missing_share == 1.0
    assert math.isnan(ref.low) and math.isnan(ref.high)
    # Still all missing live: no drift.
    assert sample_psi(ref, np.full(200, np.nan)) == 0.0
    # Present live although never in training: drift, and every present value out of range.
    live = np.where(np.arange(200) % 2 == 0, 1.0, np.nan)
    assert sample_psi(ref, live) > 0.2
    assert bin_counts(ref, live).tolist() == [100, 100]
    assert int(out_of_range(ref, live).sum()) == 100
    # Edges written but no value counted: the same rule (counts sum to 0, missing > 0).
    zero = parse_reference("m", {"edges": [0, 1], "counts": [0], "missing": 7})
    assert zero.expected.tolist() == [0.0, 1.0] and (zero.low, zero.high) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("nonsense", "reference_distributions.x"),
        ({"counts": [1], "missing": 0}, "reference_distributions.x.edges"),
        ({"edges": [0, 1], "missing": 0}, "reference_distributions.x.counts"),
        ({"edges": "0,1", "counts": [1]}, "reference_distributions.x.edges"),
        ({"edges": [0, "1"], "counts": [1]}, "reference_distributions.x.edges"),
        ({"edges": [0, True], "counts": [1]}, "reference_distributions.x.edges"),
        ({"edges": [0, math.inf], "counts": [1]}, "reference_distributions.x.edges"),
        ({"edges": [0, math.nan], "counts": [1]}, "reference_distributions.x.edges"),
        ({"edges": [2, 1, 3], "counts": [1, 1]}, "reference_distributions.x.edges"),
        ({"edges": [0, 1], "counts": [1, 2, 3]}, "reference_distributions.x.counts"),
        ({"edges": [0, 1, 2], "counts": [1]}, "reference_distributions.x.counts"),
        ({"edges": [], "counts": [1], "missing": 3}, "reference_distributions.x.counts"),
        ({"edges": [0, 1], "counts": [-1]}, "reference_distributions.x.counts"),
        ({"edges": [0, 1], "counts": [math.nan]}, "reference_distributions.x.counts"),
        ({"edges": [0, 1], "counts": [1], "missing": -1}, "reference_distributions.x.missing"),
        ({"edges": [0, 1], "counts": [1], "missing": "2"}, "reference_distributions.x.missing"),
        ({"edges": [0, 1], "counts": [0], "missing": 0}, "reference_distributions.x"),
        ({"edges": [], "counts": []}, "reference_distributions.x"),
    ],
)
def test_malformed_reference_names_the_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_reference("x", raw)
    assert caught.value.field == field


def test_malformed_and_absent_references_are_skipped_and_reported() -> None:
    raw = {
        "a": entry(normal(1000, seed=7)),
        "b": {"edges": [0, 1], "counts": [1, 2, 3]},
        "c": "nonsense",
        "m": {"edges": [], "counts": [], "missing": 5},
        "n": {"edges": [0, 1], "counts": [3], "missing": None},
    }
    skipped: dict[str, str] = {}
    found = parse_references(raw, ["a", "b", "c", "m", "n", "z"], on_skip=skipped.__setitem__)
    assert list(found) == ["a", "m", "n"]
    assert found["n"].missing_share == 0.0
    assert set(skipped) == {"b", "c", "z"}
    assert skipped["b"].startswith("reference_distributions.b.counts:")
    assert skipped["z"] == "reference_distributions.z: absent"
    # Without names every entry is tried; a raw value that is no mapping gives nothing.
    assert list(parse_references(raw)) == ["a", "m", "n"]
    assert parse_references(None, ["a"]) == {} and parse_references([1, 2], ["a"]) == {}


def test_values_beyond_float32_bin_last_without_warnings() -> None:
    ref = parse_reference("a", {"edges": [0, 1, 2], "counts": [1, 1]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bin_indices(ref, np.array([1e300, -1e300])).tolist() == [1, 0]
        assert out_of_range(ref, np.array([1e300, -1e300])).tolist() == [True, True]


def test_psi_of_an_empty_sample_is_an_error() -> None:
    ref = parse_reference("a", {"edges": [0, 1], "counts": [1]})
    with pytest.raises(ValueError, match="empty"):
        sample_psi(ref, np.empty(0))
