from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hindsight.trainer.domain.patterns.bars import WINDOW, Bars
from hindsight.trainer.domain.patterns.images import IMAGE_SHAPE, chart_image, chart_images

pytestmark = pytest.mark.unit


def random_bars(seed: int, n: int, vol: float) -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    opn = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0, vol, n)) * close
    return Bars.from_arrays(
        open=opn,
        high=np.maximum(opn, close) + wick,
        low=np.minimum(opn, close) - wick * rng.random(n),
        close=close,
        volume=rng.integers(0, 1000, n),
    )


bars_params = st.tuples(
    st.integers(0, 2**31), st.integers(WINDOW, WINDOW + 40), st.floats(1e-5, 0.05)
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bars_params)
def test_shape_range_and_finite(params: tuple[int, int, float]) -> None:
    bars = random_bars(*params)
    img = chart_image(bars.window(len(bars) - 1))
    assert img.shape == IMAGE_SHAPE and img.dtype == np.float32
    assert np.isfinite(img).all()
    assert img.min() >= 0.0 and img.max() <= 1.0
    # Every channel draws something in every column (one bar per column).
    assert (img.max(axis=0) > 0).all()


@settings(max_examples=20, deadline=None)
@given(bars_params, st.integers(0, 2**31))
def test_bars_after_the_end_change_nothing(params: tuple[int, int, float], other: int) -> None:
    bars = random_bars(*params)
    end = WINDOW - 1 + (len(bars) - WINDOW) // 2
    future = random_bars(other, len(bars), params[2])
    spliced = Bars.from_arrays(
        **{
            f: np.concatenate([getattr(bars, f)[: end + 1], getattr(future, f)[end + 1 :]])
            for f in ("open", "high", "low", "close", "volume")
        }
    )
    np.testing.assert_array_equal(chart_images(bars, [end]), chart_images(spliced, [end]))


@settings(max_examples=20, deadline=None)
@given(bars_params, st.sampled_from([0.125, 2.0, 1024.0]), st.floats(0.01, 500.0))
def test_scale_invariance(params: tuple[int, int, float], power2: float, factor: float) -> None:
    window = random_bars(*params).window(WINDOW - 1)
    img = chart_image(window)
    # A power of two scales exactly in floating point: the image is bit-identical.
    np.testing.assert_array_equal(img, chart_image(window.scaled(power2)))
    # Any other factor can only flip a pixel that lay on a rounding boundary.
    other = chart_image(window.scaled(factor))
    assert np.mean(np.abs(other - img)) < 0.01


def test_deterministic_and_window_length_checked() -> None:
    bars = random_bars(3, 100, 0.01)
    a = chart_images(bars, [63, 80, 99])
    np.testing.assert_array_equal(a, chart_images(bars, [63, 80, 99]))
    with pytest.raises(ValueError, match="bars"):
        chart_image(bars.window(99, size=40))
    with pytest.raises(ValueError, match="end"):
        bars.window(10)


def test_bad_bars_name_the_field() -> None:
    good = random_bars(1, 70, 0.01)
    with pytest.raises(ValueError, match="high"):
        Bars.from_arrays(open=good.open, high=good.low * 0.5, low=good.low, close=good.close)
    with pytest.raises(ValueError, match="close"):
        Bars.from_arrays(open=good.open, high=good.high, low=good.low, close=good.close[:-1])
    with pytest.raises(ValueError, match="open"):
        Bars.from_arrays(open=-good.open, high=good.high, low=good.low, close=good.close)
