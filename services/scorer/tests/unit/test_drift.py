"""PSI maths and the rolling window of :mod:`hindsight.scorer.domain.drift`."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scorer_testkit import BatchItem, make_model, reference_distributions, score_batch

from hindsight.common.drift import parse_references, psi
from hindsight.scorer.domain.drift import DriftMonitor
from hindsight.scorer.domain.scoring import score_one

pytestmark = pytest.mark.unit

NAMES = ["a", "b", "c"]
THRESHOLD = 0.2


def train(n: int = 20_000, *, seed: int = 1, missing_c: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(NAMES)))
    x[rng.random(n) < missing_c, 2] = np.nan
    return x


def monitor(window: int = 2000, min_rows: int = 500) -> DriftMonitor:
    card_extra = {"reference_distributions": reference_distributions(train(), NAMES)}
    found = DriftMonitor.from_card(NAMES, card_extra, window=window, min_rows=min_rows)
    assert found is not None
    return found


def test_psi_formula_on_known_shares() -> None:
    actual = np.array([[0.5, 0.5], [0.25, 0.75], [0.0, 1.0]])
    expected = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    got = psi(actual, expected)
    assert got[0] == pytest.approx(0.0)
    assert got[1] == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5))
    # The empty bin counts as 1e-4, so the PSI stays finite and large.
    assert got[2] == pytest.approx((1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2))


def test_identical_distribution_gives_psi_near_zero() -> None:
    m = monitor()
    m.add(train(2000, seed=2))
    report = m.report()
    assert report.rows == 2000
    assert report.psi is not None and set(report.psi) == set(NAMES)
    assert report.max_psi is not None and report.max_psi < 0.05
    assert report.over(THRESHOLD) == 0


def test_shifted_feature_is_over_threshold_and_the_others_are_not() -> None:
    m = monitor()
    x = train(2000, seed=3)
    x[:, 0] += 1.5  # +1.5 std
    m.add(x)
    report = m.report()
    assert report.psi is not None
    assert report.psi["a"] > THRESHOLD
    assert report.psi["b"] < THRESHOLD and report.psi["c"] < THRESHOLD
    assert report.max_psi == report.psi["a"]
    assert report.over(THRESHOLD) == 1


def test_missing_share_change_counts() -> None:
    m = monitor()
    m.add(train(2000, seed=4, missing_c=0.6))  # 10 % missing in training, 60 % live
    report = m.report()
    assert report.psi is not None
    assert report.psi["c"] > THRESHOLD
    assert report.psi["a"] < THRESHOLD


def test_no_psi_before_min_rows() -> None:
    m = monitor(min_rows=500)
    m.add(train(499, seed=5) + 5.0)
    report = m.report()
    assert report.rows == 499 and report.psi is None and report.max_psi is None
    m.add(train(1, seed=6) + 5.0)
    assert m.report().psi is not None


def test_window_forgets_old_rows() -> None:
    m = monitor(window=1000, min_rows=100)
    shifted = train(1000, seed=7)
    shifted[:, 1] -= 2.0
    m.add(shifted)
    assert (m.report().psi or {})["b"] > THRESHOLD
    # Added in uneven chunks so that the ring wraps mid-batch.
    fresh = train(1000, seed=8)
    for chunk in np.array_split(fresh, [333, 400, 999]):
        m.add(chunk)
    report = m.report()
    assert report.rows == 1000
    assert report.psi is not None and report.psi["b"] < 0.05
    # Counts equal a monitor that only ever saw the fresh rows.
    clean = monitor(window=1000, min_rows=100)
    clean.add(fresh)
    assert report.psi == pytest.approx(clean.report().psi)


def test_pending_rows_are_binned_on_flush_and_only_the_newest_window_kept() -> None:
    m = monitor(window=500, min_rows=100)
    old = train(800, seed=9) + 3.0
    new = train(500, seed=10)
    for row in old:
        m.record(row.astype(np.float32))
    m.record_many(new[:200].astype(np.float32))
    for row in new[200:]:
        m.record(row.astype(np.float32).reshape(1, -1))
    assert m.rows == 0  # nothing binned on the hot path
    assert m.flush() == 500
    assert m.flush() == 0
    clean = monitor(window=500, min_rows=100)
    clean.add(new.astype(np.float32))
    assert m.report().psi == pytest.approx(clean.report().psi)


def test_card_without_reference_disables_drift() -> None:
    assert DriftMonitor.from_card(NAMES, {}, window=10, min_rows=1) is None
    assert DriftMonitor.from_card(NAMES, None, window=10, min_rows=1) is None
    broken = {"a": {"edges": [0, 1], "counts": [1, 2, 3]}}
    assert parse_references(broken, NAMES) == {}
    assert (
        DriftMonitor.from_card(NAMES, {"reference_distributions": broken}, window=10, min_rows=1)
        is None
    )
    # Features with a usable reference are monitored, the others skipped.
    partial = reference_distributions(train(1000), NAMES)
    del partial["b"]
    m = DriftMonitor.from_card(NAMES, {"reference_distributions": partial}, window=10, min_rows=1)
    assert m is not None and m.features == ["a", "c"]


def test_scoring_queues_valid_rows_for_drift() -> None:
    m = monitor(window=100, min_rows=1)
    model = make_model()
    model = type(model).build(
        model.deployment, model.card, model.predictor, loaded_at=model.loaded_at, drift=m
    )
    score_one(model, {"a": 0.1, "b": 0.2, "c": float("nan")}, explain=False)
    score_batch([BatchItem(model, {"a": 1.0, "b": 2.0, "c": 3.0}, False)] * 3)
    assert m.flush() == 4
    assert m.rows == 4


async def test_exporter_sets_gauges_and_removes_unloaded_versions() -> None:
    from prometheus_client import REGISTRY

    from hindsight.scorer.domain.models import ModelStore
    from hindsight.scorer.drift_metrics import DriftExporter

    def with_drift(version: str) -> Any:
        base = make_model(version, name="drift_m")
        return type(base).build(
            base.deployment,
            base.card,
            base.predictor,
            loaded_at=base.loaded_at,
            drift=monitor(min_rows=10),
        )

    store = ModelStore(default_model="drift_m")
    store.install(with_drift("v1"), serve=True)
    store.install(with_drift("v2"), serve=False)
    exporter = DriftExporter(store, threshold=THRESHOLD, flush_s=1, export_s=1)
    value = REGISTRY.get_sample_value
    exporter.export()
    v2 = {"model": "drift_m", "version": "v2"}
    assert math.isnan(value("hindsight_scorer_drift_max_psi", v2) or 0.0)
    model = store.get("drift_m", "v2")
    assert model is not None and model.drift is not None
    shifted = train(1000, seed=11)
    shifted[:, 0] += 3.0
    model.drift.record_many(shifted.astype(np.float32))
    await exporter.flush()
    exporter.export()
    assert (value("hindsight_scorer_drift_max_psi", v2) or 0.0) > THRESHOLD
    assert value("hindsight_scorer_drift_features_over_threshold", v2) == 1
    assert (value("hindsight_scorer_feature_psi", {**v2, "feature": "a"}) or 0.0) > THRESHOLD
    assert store.remove("drift_m", "v2")
    exporter.export()
    assert value("hindsight_scorer_drift_max_psi", v2) is None
    assert value("hindsight_scorer_feature_psi", {**v2, "feature": "a"}) is None
    assert value("hindsight_scorer_drift_window_rows", {"model": "drift_m", "version": "v1"}) == 0
