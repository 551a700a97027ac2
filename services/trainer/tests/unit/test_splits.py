from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from hindsight.trainer.domain.splits import (
    SplitConfig,
    cv_folds,
    embargo_rows,
    split_blocks,
)

pytestmark = pytest.mark.unit
HOUR = 3_600_000_000


def times(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.cumsum(rng.integers(0, 3, size=n)) * HOUR  # ties on purpose
    closed = ts + rng.integers(1, 48, size=n) * HOUR
    return ts.astype(np.int64), closed.astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_training_row_is_older_than_every_validation_row(seed: int) -> None:
    ts, closed = times(5000, seed)
    cfg = SplitConfig(embargo_frac=0.01)
    blocks = split_blocks(ts, closed, cfg)
    tr, va, te = blocks.train, blocks.validation, blocks.test
    assert ts[tr].max() < ts[va].min()
    assert ts[va].max() < ts[te].min()
    # Purged: every training outcome was known before the validation block started.
    assert closed[tr].max() < ts[va].min()
    assert closed[va].max() < ts[te].min()
    # The embargo: at least ceil(1 % of rows) rows lie between the blocks.
    gap = embargo_rows(5000, 0.01)
    assert va.min() - tr.max() > gap and te.min() - va.max() > gap
    assert len(set(tr) | set(va) | set(te) | set(blocks.dropped)) == 5000
    assert not set(tr) & set(va) and not set(va) & set(te)
    assert te.min() == int(5000 * 0.85)  # the test block is never cut


def test_time_embargo() -> None:
    ts, closed = times(2000)
    blocks = split_blocks(ts, closed, SplitConfig(embargo_frac=0, embargo_time=timedelta(days=3)))
    assert ts[blocks.validation].min() - ts[blocks.train].max() >= 3 * 24 * HOUR


def test_unsorted_rows_are_refused() -> None:
    ts, closed = times(100)
    with pytest.raises(ValueError):
        split_blocks(ts[::-1].copy(), closed, SplitConfig())


@pytest.mark.parametrize("k", [3, 5])
def test_cv_folds_never_train_on_the_future(k: int) -> None:
    ts, closed = times(3000, 4)
    folds = cv_folds(ts, closed, SplitConfig(cv_folds=k, embargo_frac=0.01))
    assert len(folds) == k
    sizes = []
    for fold in folds:
        assert ts[fold.train].max() < ts[fold.validation].min()
        assert closed[fold.train].max() < ts[fold.validation].min()
        assert fold.validation.min() - fold.train.max() > embargo_rows(3000, 0.01)
        sizes.append(len(fold.train))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # expanding windows
    # Validation chunks are disjoint and in time order.
    starts = [f.validation.min() for f in folds]
    assert starts == sorted(starts)
