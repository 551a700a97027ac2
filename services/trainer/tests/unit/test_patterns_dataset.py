from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from hindsight.trainer.domain.patterns.bars import WINDOW, Bars
from hindsight.trainer.domain.patterns.dataset import (
    build_windows,
    class_weights,
    concat,
    expand_pseudo_labels,
    split_dataset,
)
from hindsight.trainer.domain.patterns.detectors import CLASSES, NONE
from hindsight.trainer.domain.patterns.synthetic import planted_series

pytestmark = pytest.mark.unit
HOUR = 3_600_000_000


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(0)
    bars, ends = planted_series([CLASSES[i % 5] for i in range(30)], rng)
    ts = np.arange(len(bars), dtype=np.int64) * HOUR
    return bars, ts, ends


def test_windows_with_a_stride(series) -> None:
    bars, ts, _ = series
    ds = build_windows(bars, ts, stride=16)
    assert len(ds) == len(range(WINDOW - 1, len(bars), 16))
    assert ds.images.shape[1:] == (64, 64, 3)
    assert (np.diff(ds.ts) == 16 * HOUR).all() and ds.ts[0] == ts[WINDOW - 1]
    assert set(np.unique(ds.labels)) <= set(range(len(CLASSES)))
    assert (ds.pole_katr[ds.labels == NONE] == 0).all()


def test_blocks_are_time_ordered_and_share_no_bar(series) -> None:
    bars, ts, _ = series
    ds = build_windows(bars, ts, stride=4)
    sp = split_dataset(ds, bar_interval=timedelta(hours=1))
    assert sp.train.ts.max() < sp.validation.ts.min() < sp.test.ts.min()
    # The first bar of a later block's first window lies after the earlier block's last end.
    assert sp.validation.ts.min() - (WINDOW - 1) * HOUR > sp.train.ts.max()
    assert sp.test.ts.min() - (WINDOW - 1) * HOUR > sp.validation.ts.max()


def test_bad_inputs_name_the_field(series) -> None:
    bars, ts, _ = series
    with pytest.raises(ValueError, match="ts"):
        build_windows(bars, ts[:-1])
    with pytest.raises(ValueError, match="ts"):
        build_windows(bars, ts[::-1].copy())
    with pytest.raises(ValueError, match="stride"):
        build_windows(bars, ts, stride=0)


def test_class_weights_balance_the_classes() -> None:
    y = np.array([0, 0, 0, 1, 4, 4])
    w = class_weights(y, 5)
    assert w[2] == 0 and w[3] == 0
    # Each present class carries the same total weight.
    totals = [w[c] * (y == c).sum() for c in (0, 1, 4)]
    np.testing.assert_allclose(totals, totals[0])
    assert w[1] > w[4] > w[0]


def test_pseudo_labels_keep_confident_and_verified_windows(series) -> None:
    bars, ts, ends = series
    ds = build_windows(bars, ts, ends=ends[:6])
    probs = np.full((6, 5), 0.05)
    probs[:, 2] = 0.8
    probs[0] = [0.96, 0.01, 0.01, 0.01, 0.01]
    probs[3] = [0.01, 0.01, 0.01, 0.01, 0.96]
    keep = np.zeros(6, bool)
    keep[5] = True
    out = expand_pseudo_labels(ds, probs, 0.9, keep=keep)
    assert list(out.ts) == [ds.ts[0], ds.ts[3], ds.ts[5]]
    assert list(out.labels) == [0, 4, ds.labels[5]]
    np.testing.assert_allclose(out.confidence[:2], 0.96, rtol=1e-6)
    assert out.confidence[2] == ds.confidence[5]
    merged = concat(ds, out)
    assert len(merged) == 9 and (np.diff(merged.ts) >= 0).all()
    with pytest.raises(ValueError, match="probabilities"):
        expand_pseudo_labels(ds, probs[:3], 0.9)
    with pytest.raises(ValueError, match="threshold"):
        expand_pseudo_labels(ds, probs, 0.0)


def test_eurusd_hourly_windows_are_plausible() -> None:
    """Realism check on real bars: mostly ``none``, several patterns, valid images."""
    from backtesting.test import EURUSD

    bars = Bars.from_arrays(
        open=EURUSD.Open,
        high=EURUSD.High,
        low=EURUSD.Low,
        close=EURUSD.Close,
        volume=EURUSD.Volume,
    )
    ts = EURUSD.index.values.astype("datetime64[us]").astype(np.int64)
    ds = build_windows(bars, ts, stride=16)
    counts = np.bincount(ds.labels, minlength=len(CLASSES))
    assert 0.5 < counts[NONE] / len(ds) < 0.97
    assert np.count_nonzero(counts) >= 3
    assert np.isfinite(ds.images).all() and 0 <= ds.images.min() and ds.images.max() <= 1
    sp = split_dataset(ds, bar_interval=timedelta(hours=1))
    assert sp.train.ts.max() < sp.validation.ts.min() < sp.test.ts.min()
