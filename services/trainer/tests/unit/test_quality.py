from __future__ import annotations

from datetime import timedelta

import pytest

from hindsight.trainer.domain.quality import QualityConfig, check_quality

from .helpers import T0, row

pytestmark = pytest.mark.unit
CFG = QualityConfig(min_rows=10, max_missing_share=0.3)


def clean(n: int = 40) -> list:
    return [row(i) for i in range(n)]


def test_clean_data_passes() -> None:
    report, used = check_quality(clean(), CFG, as_of=T0 + timedelta(days=30))
    assert report.passed, report.errors
    assert len(used) == 40 and report.feature_names == ["a", "b"]


def test_duplicate_signal_ids_fail() -> None:
    rows = clean() + [row(3, ts=T0 + timedelta(days=9))]
    report, used = check_quality(rows, CFG)
    assert not report.passed and used == []
    assert report.duplicate_signal_ids == ["s3"]


def test_duplicate_symbol_ts_side_rows_fail() -> None:
    rows = clean() + [row(5, signal_id="other")]
    report, _ = check_quality(rows, CFG)
    assert not report.passed and len(report.duplicate_rows) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"entry_price": 0.0},
        {"exit_price": float("inf")},
        {"entry_price": -1.0},
        {"exit_price": float("nan")},
    ],
)
def test_price_sanity(bad: dict[str, float]) -> None:
    rows = clean()
    rows[7] = row(7, **bad)
    report, _ = check_quality(rows, CFG)
    assert not report.passed and report.bad_prices == ["s7"]


def test_outcome_closed_before_signal_fails() -> None:
    rows = clean()
    rows[2] = row(2, closed_at=T0)
    report, _ = check_quality(rows, CFG)
    assert not report.passed and report.closed_before_signal == ["s2"]


def test_future_timestamps_fail() -> None:
    rows = clean()
    report, _ = check_quality(rows, CFG, as_of=T0 + timedelta(hours=10))
    assert not report.passed and "s39" in report.future_ts


def test_signal_emitted_before_its_ts_fails() -> None:
    rows = clean()
    rows[4] = row(4, occurred_at=T0)
    report, _ = check_quality(rows, CFG)
    assert not report.passed and report.emitted_before_ts == ["s4"]


def test_arrival_order_is_reported_not_fatal() -> None:
    rows = [row(i, seq=40 - i) for i in range(40)]
    report, _ = check_quality(rows, CFG)
    assert report.passed and report.out_of_order["EURUSD"] > 0 and report.warnings


def test_missing_feature_share_over_threshold_fails() -> None:
    rows = [row(i, features={"a": 1.0, "b": None if i % 2 else 1.0}) for i in range(40)]
    report, _ = check_quality(rows, CFG)
    assert not report.passed and report.missing_share["b"] == 0.5
    assert any("feature b" in e for e in report.errors)


def test_newest_schema_version_only() -> None:
    rows = clean() + [
        row(100 + i, feature_schema_version=2, features={"c": 1.0}) for i in range(20)
    ]
    report, used = check_quality(rows, QualityConfig(min_rows=10))
    assert report.passed, report.errors
    assert report.feature_schema_version == 2 and report.feature_names == ["c"]
    assert report.excluded_by_schema_version == {"1": 40} and len(used) == 20


def test_too_few_rows_and_single_class_fail() -> None:
    report, _ = check_quality([row(i, result="loss") for i in range(5)], CFG)
    assert not report.passed
    assert any("usable rows" in e for e in report.errors)
    assert any("single class" in e for e in report.errors)


def test_no_outcomes_fail() -> None:
    report, used = check_quality([row(1, result=None)], CFG)
    assert not report.passed and used == []
