"""The report's pure parts: month windows, /metrics parsing, weekly roll-up, rendering."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import pytest

from hindsight.common.registry_api import CalibrationBin, DailyMetrics, EvaluationReport
from hindsight.ops.report.render import expected_calibration_error, render_html, weekly
from hindsight.ops.report.source import ReportData, month_window, parse_drift

pytestmark = pytest.mark.unit

PAGE = """# HELP hindsight_trainer_feature_psi x
# TYPE hindsight_trainer_feature_psi gauge
hindsight_trainer_feature_psi{feature="a",model="m"} 0.5
hindsight_trainer_feature_psi{feature="b",model="m"} NaN
hindsight_trainer_feature_psi{feature="a",model="other"} 9.0
# TYPE hindsight_trainer_feature_missing_share gauge
hindsight_trainer_feature_missing_share{feature="a",model="m"} 0.25
# TYPE hindsight_trainer_drift_window_rows gauge
hindsight_trainer_drift_window_rows{model="m"} 300.0
# TYPE hindsight_trainer_drift_reference_info gauge
hindsight_trainer_drift_reference_info{model="m",version="v9"} 1.0
# TYPE hindsight_scorer_feature_psi gauge
hindsight_scorer_feature_psi{feature="a",model="m",version="v9"} 0.05
"""


def test_month_window_wraps_the_year() -> None:
    assert month_window("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert month_window("2026-02")[1] == datetime(2026, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "november", "2026-00"])
def test_month_window_refuses_bad_months(bad: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_window(bad)


def test_parse_drift_reads_one_model_from_both_sources() -> None:
    rows, windows = parse_drift(PAGE, "m")
    trainer = {r.feature: r for r in rows if r.source.startswith("live")}
    assert set(trainer) == {"a", "b"}
    assert trainer["a"].psi == 0.5 and trainer["a"].missing_share == 0.25
    assert trainer["a"].version == "v9" and math.isnan(trainer["b"].psi)
    scorer = [r for r in rows if r.source.startswith("scored")]
    assert [(r.feature, r.psi, r.version) for r in scorer] == [("a", 0.05, "v9")]
    assert windows == {"live signals (trainer)": 300.0}


def _day(day: str, n: int, metrics: tuple[float, float, float, float] | None) -> DailyMetrics:
    win_rate, mean_p, brier, log_loss = metrics or (None, None, None, None)
    return DailyMetrics(
        version="v",
        day=date.fromisoformat(day),
        predictions=n,
        n=n,
        win_rate=win_rate,
        mean_p=mean_p,
        brier=brier,
        log_loss=log_loss,
    )


def test_weekly_weights_by_n_and_ece() -> None:
    daily = [
        _day("2026-11-02", 10, (0.5, 0.5, 0.2, 0.6)),
        _day("2026-11-03", 30, (0.7, 0.6, 0.1, 0.4)),
        _day("2026-11-09", 0, None),
    ]
    [week] = weekly(daily)
    assert week.week == date(2026, 11, 2)
    assert week.n == 40 and week.win_rate == pytest.approx(0.65)
    assert week.brier == pytest.approx(0.125)
    bins = [
        CalibrationBin(version="v", bin=3, n=10, mean_p=0.2, win_rate=0.3, lower=0.2, upper=0.3),
        CalibrationBin(version="v", bin=9, n=30, mean_p=0.8, win_rate=0.6, lower=0.8, upper=0.9),
    ]
    assert expected_calibration_error(bins, "v") == pytest.approx((10 * 0.1 + 30 * 0.2) / 40)
    assert expected_calibration_error(bins, "other") is None


def test_an_empty_month_renders_without_charts() -> None:
    evaluation = EvaluationReport.model_validate_json(
        json.dumps(
            {
                "model_name": "m",
                "from": "2026-11-01T00:00:00+00:00",
                "to": "2026-12-01T00:00:00+00:00",
                "production_version": None,
                "versions": [],
                "totals": [],
                "daily": [],
                "calibration": [],
                "volume": [],
                "experiments": [],
                "stage_moves": [],
                "degradation_rollbacks": [],
                "calibration_bins": 10,
            }
        )
    )
    html = render_html(ReportData("m", "2026-11", evaluation, notes=["http://x/metrics: down"]))
    assert "data:image/png" not in html
    assert "No evaluated predictions in this month." in html
    assert "http://x/metrics: down" in html
