"""Builders shared by the unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hindsight.trainer.domain.rows import TrainingRow

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def row(i: int, **overrides: Any) -> TrainingRow:
    """A clean row: one hour apart, closes 2 h later, alternating results."""
    ts = T0 + timedelta(hours=i)
    fields: dict[str, Any] = {
        "signal_id": f"s{i}",
        "symbol": "EURUSD",
        "timeframe": "1h",
        "side": "buy",
        "ts": ts,
        "features": {"a": float(i % 7), "b": float(i % 3)},
        "feature_schema_version": 1,
        "closed_at": ts + timedelta(hours=2),
        "result": "win" if i % 2 else "loss",
        "entry_price": 1.1,
        "exit_price": 1.2,
        "seq": i,
        "occurred_at": ts,
    }
    fields.update(overrides)
    return TrainingRow(**fields)
