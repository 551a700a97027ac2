from __future__ import annotations

import numpy as np
import pytest

from hindsight.trainer.domain.calibration import (
    GRID_POINTS,
    ISOTONIC_MIN_ROWS,
    P_MIN,
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
    expected = np.clip(np.interp(q, grid, cal.grid_y), P_MIN, 1 - P_MIN)
    assert np.allclose(cal(q), expected, atol=1e-12)


def test_sigmoid_is_identity_like_on_calibrated_input() -> None:
    p, y = sample(lambda p: p, n=20000)
    cal = fit_sigmoid(p, y)
    assert cal.a == pytest.approx(1.0, abs=0.1) and abs(cal.b) < 0.1


def separable(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A small block where raw p separates the classes perfectly: an unguarded isotonic
    (or a nearly unregularised sigmoid) answers exactly 0 and 1 here."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, n)
    return p, (p >= 0.5).astype(np.int32)


def test_a_small_block_gets_sigmoid_and_never_a_certainty() -> None:
    p, y = separable(ISOTONIC_MIN_ROWS - 1)
    cal = choose_calibrator(p, y)
    assert cal.method == "sigmoid"
    assert "isotonic not tried" in cal.scores["rule"]
    q = cal(np.concatenate([p, np.linspace(0.0, 1.0, 1001)]))
    assert np.all(q > 0.0) and np.all(q < 1.0)
    assert q.min() == P_MIN and q.max() == 1.0 - P_MIN  # the clip binds here
    assert np.all(1.0 - q > 0.0)  # p_failure too


def test_isotonic_is_considered_from_the_size_threshold_and_clipped_too() -> None:
    p, y = separable(ISOTONIC_MIN_ROWS)
    cal = choose_calibrator(p, y)
    assert set(cal.scores["cv_on_validation"]) == {"sigmoid", "isotonic"}
    assert "lower CV log-loss" in cal.scores["rule"]
    iso = fit_isotonic(p, y)
    assert min(iso.grid_y) == 0.0 and max(iso.grid_y) == 1.0  # the raw fit is 0/1 ...
    q = iso(np.linspace(0.0, 1.0, 1001))
    assert q.min() == P_MIN and q.max() == 1.0 - P_MIN  # ... its answers are not
    assert cal.to_dict()["output_clip"] == [P_MIN, 1.0 - P_MIN]


@pytest.mark.parametrize("n", [40, 200, ISOTONIC_MIN_ROWS - 1])
def test_the_method_follows_the_block_size_even_for_a_step(n: int) -> None:
    p, y = sample(lambda p: np.where(p < 0.5, 0.1, 0.9), n=n, seed=n)
    assert choose_calibrator(p, y).method == "sigmoid"
