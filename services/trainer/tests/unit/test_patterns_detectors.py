from __future__ import annotations

import numpy as np
import pytest

from hindsight.trainer.domain.patterns.bars import WINDOW, Bars
from hindsight.trainer.domain.patterns.detectors import CLASSES, detect
from hindsight.trainer.domain.patterns.synthetic import planted_window

pytestmark = pytest.mark.unit


def from_closes(close: np.ndarray, wick: float = 0.3, base: float = 100.0) -> Bars:
    """Bars with a fixed wick around each open-close body (units of 1 = 1 ATR-ish)."""
    c = base + np.asarray(close, dtype=np.float64)
    o = np.concatenate([[c[0]], c[:-1]])
    return Bars.from_arrays(
        open=o, high=np.maximum(o, c) + wick, low=np.minimum(o, c) - wick, close=c
    )


def quiet(n: int) -> np.ndarray:
    """A zig-zag of ±0.4: true ranges ~1, no trend."""
    return np.tile([0.0, 0.4], n // 2 + 1)[:n]


def test_flag_pole_then_tight_drift() -> None:
    close = quiet(WINDOW)
    close[-16:-10] = np.linspace(1.5, 9.0, 6)  # a 6-bar pole of ~9 ATR
    close[-10:] = 9.0 - np.linspace(0.2, 2.0, 10) + np.tile([0.0, 0.3], 5)
    found = detect(from_closes(close, wick=0.2))
    assert found.pattern == "flag"
    assert 6.0 < found.pole_katr < 14.0
    assert 0.5 <= found.confidence <= 1.0


def test_blow_off_accelerates_into_the_end() -> None:
    close = quiet(WINDOW)
    close[-8:] = np.cumsum(np.geomspace(0.4, 4.0, 8)) + close[-9]
    found = detect(from_closes(close))
    assert found.pattern == "blow_off"
    assert found.pole_katr >= 5.0


def test_wick_exhaustion_rejects_a_new_high() -> None:
    close = quiet(WINDOW)
    close[-21:] = close[-22] + np.linspace(0.4, 8.0, 21)
    close[-1] = close[-2] + 0.1
    bars = from_closes(close)
    high = bars.high.copy()
    high[-1] += 3.5  # a long upper wick above everything before
    found = detect(Bars.from_arrays(open=bars.open, high=high, low=bars.low, close=bars.close))
    assert found.pattern == "wick_exhaustion"
    assert found.pole_katr == 0.0


def test_wedge_converging_rising_lines() -> None:
    close = quiet(WINDOW)
    t = np.arange(30, dtype=np.float64)
    upper, lower = 6.0 + 0.1 * t, 0.28 * t
    close[-30:] = lower + (upper - lower) * (0.5 + 0.45 * np.sin(2 * np.pi * t / 7.5))
    found = detect(from_closes(close, wick=0.3))
    assert found.pattern == "wedge"


def test_quiet_market_is_none() -> None:
    found = detect(from_closes(quiet(WINDOW)))
    assert found.pattern == "none"
    assert found.pole_katr == 0.0
    assert 0.5 <= found.confidence <= 1.0


@pytest.mark.parametrize("pattern", CLASSES)
def test_planted_windows_are_found(pattern: str) -> None:
    rng = np.random.default_rng(7)
    hits = [detect(planted_window(pattern, rng)).pattern == pattern for _ in range(40)]
    assert np.mean(hits) >= 0.8


def test_labels_do_not_depend_on_the_price_level() -> None:
    rng = np.random.default_rng(1)
    for pattern in CLASSES:
        window = planted_window(pattern, rng)
        assert detect(window) == detect(window.scaled(4.0))


def test_window_length_checked() -> None:
    with pytest.raises(ValueError, match="window"):
        detect(from_closes(quiet(40)))
