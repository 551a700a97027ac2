"""The scorer's DriftMonitor and the trainer's LiveDrift report the same PSI for the same rows.

Both dashboards show per-feature PSI against the same model card; this feeds one stream of
rows (as the scorer sees them: float32 rows, NaN = missing; as the trainer sees them: the
``signal.features`` floats, None = missing) through both windows and compares.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hindsight.common.drift import parse_references
from hindsight.scorer.domain.drift import DriftMonitor
from hindsight.trainer.domain.drift import LiveDrift
from hindsight.trainer.domain.training import reference_distributions

pytestmark = pytest.mark.unit

NAMES = ["normal", "shifted", "discrete", "missing_more", "never_in_training", "constant"]
WINDOW = 500


def rows(n: int, *, seed: int, live: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((n, len(NAMES)))
    x[:, 0] = rng.normal(size=n)
    x[:, 1] = rng.normal(size=n) + (1.5 if live else 0.0)
    x[:, 2] = rng.integers(1, 10, size=n) / 10.0  # values sit on the decile edges
    x[:, 3] = rng.normal(size=n)
    x[rng.random(n) < (0.5 if live else 0.1), 3] = np.nan
    x[:, 4] = np.where(rng.random(n) < 0.3, rng.normal(size=n), np.nan) if live else np.nan
    x[:, 5] = 2.5
    if live:
        x[-40:, 0] = 50.0  # outside the training range, in the last window
        x[-60:-40, 5] = 3.0
    return x


def test_same_rows_give_the_same_psi_in_the_scorer_and_the_trainer() -> None:
    raw = reference_distributions(rows(20_000, seed=1, live=False), NAMES)
    scorer = DriftMonitor.from_card(
        NAMES, {"reference_distributions": raw}, window=WINDOW, min_rows=100
    )
    assert scorer is not None
    trainer = LiveDrift(parse_references(raw, NAMES), window=WINDOW, min_rows=100)
    assert scorer.features == trainer.features == NAMES

    live = rows(1300, seed=2, live=True)  # more than a window: both rings wrap
    for i, row in enumerate(live):
        if i % 3 == 0:
            scorer.record(row.astype(np.float32))
        else:
            scorer.record_many(row.astype(np.float32).reshape(1, -1))
        if i % 400 == 399:
            scorer.flush()
        trainer.observe(
            {n: None if math.isnan(v) else float(v) for n, v in zip(NAMES, row, strict=True)}
        )
    scorer.flush()

    mine, theirs = scorer.report(), trainer.report()
    assert mine.rows == theirs.rows == WINDOW
    assert mine.psi is not None and theirs.psi is not None
    for name in NAMES:
        assert mine.psi[name] == pytest.approx(theirs.psi[name], rel=1e-12, abs=1e-15), name
    # Not vacuous: unchanged features stay low, the moved ones are over the threshold.
    assert max(mine.psi["normal"], mine.psi["discrete"]) < 0.1
    assert min(mine.psi[n] for n in ("shifted", "missing_more", "never_in_training")) > 0.2
    assert mine.over(0.2) == theirs.over(0.2)
