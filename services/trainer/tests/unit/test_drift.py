"""Live drift of feature rows against a training reference (domain/drift.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hindsight.common.drift import parse_references
from hindsight.trainer.domain.drift import LiveDrift
from hindsight.trainer.domain.training import reference_distributions

pytestmark = pytest.mark.unit

NAMES = ["a", "b", "c"]


def monitor(window: int = 1000, min_rows: int = 100) -> LiveDrift:
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, (5000, 3))
    references = parse_references(reference_distributions(train, NAMES), NAMES)
    return LiveDrift(references, window=window, min_rows=min_rows)


def feed(drift: LiveDrift, rows: np.ndarray, *, none_in: str | None = None) -> None:
    for row in rows:
        values: dict[str, float | None] = dict(zip(NAMES, map(float, row), strict=True))
        if none_in is not None and math.isnan(row[NAMES.index(none_in)]):
            values[none_in] = None
        drift.observe(values)


def test_same_distribution_has_low_psi_and_no_quality_issues() -> None:
    drift = monitor()
    feed(drift, np.random.default_rng(2).normal(0, 1, (1000, 3)))
    report = drift.report()
    assert report.rows == 1000 and report.psi is not None
    assert max(report.psi.values()) < 0.05
    assert report.missing_share == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert report.out_of_range_share is not None and max(report.out_of_range_share.values()) < 0.01
    assert report.over(0.2) == 0


def test_shifted_feature_raises_psi_over_the_threshold() -> None:
    drift = monitor()
    rows = np.random.default_rng(3).normal(0, 1, (1000, 3))
    rows[:, 0] += 1.0
    feed(drift, rows)
    report = drift.report()
    assert report.psi is not None
    assert report.psi["a"] > 0.2 > max(report.psi["b"], report.psi["c"])
    assert report.over(0.2) == 1


def test_none_heavy_feature_raises_missing_share_and_psi() -> None:
    drift = monitor()
    rows = np.random.default_rng(4).normal(0, 1, (1000, 3))
    rows[np.random.default_rng(5).uniform(size=1000) < 0.5, 1] = np.nan
    feed(drift, rows, none_in="b")
    drift.observe({"a": 0.1, "c": 0.2})  # an absent key is missing too
    report = drift.report()
    assert report.missing_share is not None and report.psi is not None
    assert 0.45 < report.missing_share["b"] < 0.55
    assert report.missing_share["a"] == 0.0
    assert report.psi["b"] > 0.2


def test_values_outside_the_training_range_are_counted() -> None:
    drift = monitor(window=200, min_rows=10)
    rows = np.random.default_rng(6).normal(0, 1, (200, 3))
    rows[:50, 2] = 100.0
    feed(drift, rows)
    report = drift.report()
    assert report.out_of_range_share is not None
    assert report.out_of_range_share["c"] == pytest.approx(0.25)


def test_nothing_is_reported_before_min_rows_and_the_window_rolls() -> None:
    drift = monitor(window=100, min_rows=50)
    feed(drift, np.full((49, 3), 5.0))
    assert drift.report().psi is None
    feed(drift, np.random.default_rng(7).normal(0, 1, (100, 3)))  # pushes the 5.0 rows out
    report = drift.report()
    assert report.rows == 100 and report.out_of_range_share == {"a": 0.0, "b": 0.0, "c": 0.0}


def test_all_missing_and_constant_features_in_training_are_watched() -> None:
    train = np.column_stack([np.random.default_rng(8).normal(0, 1, 1000), np.full(1000, 2.5)])
    train = np.column_stack([train, np.full(1000, np.nan)])
    references = parse_references(reference_distributions(train, NAMES), NAMES)
    assert list(references) == NAMES and references["c"].missing_share == 1.0
    drift = LiveDrift(references, window=100, min_rows=10)
    rows = np.random.default_rng(9).normal(0, 1, (100, 3))
    rows[:, 1] = 2.5
    rows[:60, 2] = np.nan  # "c" never had a value in training; 40 % of live rows have one
    feed(drift, rows, none_in="c")
    report = drift.report()
    assert report.psi is not None and report.out_of_range_share is not None
    assert report.psi["b"] == 0.0 and report.out_of_range_share["b"] == 0.0
    assert report.psi["c"] > 0.2 and report.out_of_range_share["c"] == pytest.approx(0.4)
    assert report.missing_share is not None and report.missing_share["c"] == pytest.approx(0.6)


def test_malformed_references_are_skipped() -> None:
    raw = {
        "a": {"edges": [0, 1, 2], "counts": [5, 5], "missing": 0},
        "b": {"edges": [0, 1], "counts": [1, 2, 3]},
        "c": "nonsense",
    }
    assert list(parse_references(raw, NAMES)) == ["a"]
    with pytest.raises(ValueError):
        LiveDrift({})
