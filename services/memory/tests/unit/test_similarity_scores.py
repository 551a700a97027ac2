"""Similarity-API records and scores: checks that name the field, numbers by hand; no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import SignalLabeled
from hindsight.memory.similarity import (
    EMBED_DIM,
    PatternEmbed,
    PatternOutcome,
    outcome_of,
    percentile,
    sim_conf,
)

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _embed(**overrides: object) -> PatternEmbed:
    values: dict[str, object] = {
        "signal_id": "s1",
        "symbol": "EURUSD",
        "timeframe": "1h",
        "ts": T0,
        "embed": [1.0] + [0.0] * (EMBED_DIM - 1),
        "pattern": "flag",
        "quality": 0.8,
        "pole_katr": 1.5,
        "model_version": "m1",
    }
    values.update(overrides)
    return PatternEmbed(**values)  # type: ignore[arg-type]


def test_sim_conf_is_mean_quality_times_mean_cosine() -> None:
    # qualities mean 0.6, cosines mean 0.8 -> 0.48
    assert sim_conf([0.4, 0.8, 0.6], [0.9, 0.7, 0.8]) == pytest.approx(0.48)
    assert sim_conf([], []) is None


def test_percentile_interpolates_like_numpy() -> None:
    # 0.65 of the way through [-1, 0, 2, 3]: position 1.95 -> 0 + 0.95 * 2 = 1.9
    assert percentile([3.0, -1.0, 2.0, 0.0], 0.65) == pytest.approx(1.9)
    assert percentile([2.5], 0.65) == 2.5
    assert percentile([], 0.5) is None


@settings(max_examples=50)
@given(
    st.lists(st.floats(-50, 50), min_size=1, max_size=40),
    st.floats(0.0, 1.0),
)
def test_percentile_matches_numpy_quantile(values: list[float], p: float) -> None:
    assert percentile(values, p) == pytest.approx(float(np.quantile(values, p)), abs=1e-9)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_percentile_rejects_p_outside_the_unit_interval(p: float) -> None:
    with pytest.raises(InvalidInputError, match="p must") as caught:
        percentile([1.0], p)
    assert caught.value.field == "p"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"embed": [1.0] * (EMBED_DIM - 1)}, "embed"),
        ({"embed": [float("nan")] + [1.0] * (EMBED_DIM - 1)}, "embed"),
        ({"embed": [0.0] * EMBED_DIM}, "embed"),
        ({"ts": datetime(2024, 1, 1)}, "ts"),
        ({"symbol": " "}, "symbol"),
        ({"quality": float("inf")}, "quality"),
        ({"model_version": ""}, "model_version"),
    ],
)
def test_a_bad_embedding_row_names_its_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        _embed(**overrides)
    assert caught.value.field == field


def test_a_row_keeps_its_values_as_floats() -> None:
    row = _embed(embed=np.arange(1, EMBED_DIM + 1, dtype=np.float32).tolist(), quality=1)
    assert row.embed[:3] == (1.0, 2.0, 3.0)
    assert isinstance(row.quality, float)


def test_outcome_of_a_label_is_known_when_the_label_occurred() -> None:
    event = SignalLabeled.create(
        source="market",
        signal_id="s9",
        label_spec="0123456789abcdef",
        horizon_bars=24,
        runup_r=2.0,
        drawdown_r=-0.5,
        realised_r=1.25,
        y_entry=1,
    )
    assert outcome_of(event) == PatternOutcome("s9", 1.25, event.occurred_at)
    with pytest.raises(InvalidInputError) as caught:
        PatternOutcome("s9", float("nan"), T0)
    assert caught.value.field == "realised_r"
