from __future__ import annotations

import numpy as np
import pytest

from hindsight.trainer.domain.calibration import (
    GRID_POINTS,
    choose_calibrator,
    fit_isotonic,
    fit_sigmoid,
)

pytestmark = pytest.mark.unit


def sample(truth, n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < truth(p)).astype(np.int32)
    return p, y


def test_sigmoid_chosen_for_a_logistic_distortion() -> None:
    def truth(p: np.ndarray) -> np.ndarray:
        z = np.log(p / (1 - p))
        return 1 / (1 + np.exp(-(0.5 * z + 0.3)))

    p, y = sample(truth)
    cal = choose_calibrator(p, y)
    assert cal.method == "sigmoid"
    assert cal.a == pytest.approx(0.5, abs=0.15) and cal.b == pytest.approx(0.3, abs=0.15)


def test_isotonic_chosen_for_a_step() -> None:
    p, y = sample(lambda p: np.where(p < 0.5, 0.1, 0.9))
    cal = choose_calibrator(p, y)
    assert cal.method == "isotonic"
    assert set(cal.scores["cv_on_validation"]) == {"sigmoid", "isotonic"}


def test_isotonic_is_monotone_bounded_and_interpolates_the_grid() -> None:
    p, y = sample(lambda p: p**2)
    cal = fit_isotonic(p, y)
    grid = np.linspace(0, 1, GRID_POINTS)
    assert len(cal.grid_y) == GRID_POINTS
    assert np.all(np.diff(cal.grid_y) >= 0) and 0 <= min(cal.grid_y) <= max(cal.grid_y) <= 1
    q = np.linspace(0, 1, 997)
    assert np.allclose(cal(q), np.interp(q, grid, cal.grid_y), atol=1e-12)


def test_sigmoid_is_identity_like_on_calibrated_input() -> None:
    p, y = sample(lambda p: p, n=20000)
    cal = fit_sigmoid(p, y)
    assert cal.a == pytest.approx(1.0, abs=0.1) and abs(cal.b) < 0.1
