from __future__ import annotations

import numpy as np
import pytest

from hindsight.trainer.domain.trading import Gates, recommend, trading_metrics

pytestmark = pytest.mark.unit
DAY = 86400.0


def test_trading_metrics_by_hand() -> None:
    p = np.array([0.6, 0.7, 0.4, 0.9])
    r = np.array([1.5, -1.0, 1.0, -1.0])
    m = trading_metrics(p, r, span_s=365.25 * DAY, threshold=0.55, risk_per_trade=0.01)
    assert m["trades"] == 3
    assert m["win_rate"] == pytest.approx(1 / 3)
    assert m["total_r"] == pytest.approx(-0.5) and m["avg_r"] == pytest.approx(-0.5 / 3)
    assert m["profit_factor"] == pytest.approx(0.75)
    assert m["max_drawdown"] == pytest.approx((1.015 - 0.995) / 1.015)
    assert m["max_drawdown_r"] == pytest.approx(2.0)
    per_trade = np.mean([1.5, -1, -1]) / np.std([1.5, -1, -1], ddof=1)
    assert m["sharpe_per_trade"] == pytest.approx(per_trade)
    assert m["sharpe"] == pytest.approx(per_trade * np.sqrt(3))  # 3 trades in one year


def test_no_trades() -> None:
    m = trading_metrics(np.array([0.1]), np.array([1.0]), span_s=DAY)
    assert m["trades"] == 0 and m["profit_factor"] is None


def good(**overrides: float) -> dict:
    base = {"trades": 100, "win_rate": 0.6, "sharpe": 2.0, "max_drawdown": 0.1}
    return {**base, **overrides}


@pytest.mark.parametrize(
    "bad", [{"trades": 29}, {"win_rate": 0.54}, {"sharpe": 0.99}, {"max_drawdown": 0.21}]
)
def test_each_floor_rejects(bad: dict) -> None:
    assert recommend(good(**bad), None, Gates())["decision"] == "REJECT"


def test_promote_without_production() -> None:
    assert recommend(good(), None, Gates())["decision"] == "PROMOTE"


def test_production_comparison() -> None:
    out = recommend(good(sharpe=2.09), {"sharpe": 2.0}, Gates())
    assert out["decision"] == "MONITOR" and out["improvement"] == pytest.approx(0.045)
    assert recommend(good(sharpe=2.2), {"sharpe": 2.0}, Gates())["decision"] == "PROMOTE"
    assert recommend(good(), {"unavailable": "registry down"}, Gates())["decision"] == "MONITOR"
