from __future__ import annotations

import numpy as np
import pytest

from hindsight.devstack.synthetic import generate
from hindsight.trainer.domain.quality import QualityConfig, check_quality
from hindsight.trainer.domain.rows import TrainingRow
from hindsight.trainer.domain.splits import SplitConfig
from hindsight.trainer.domain.training import TrainingParams, train_model

pytestmark = pytest.mark.unit
PARAMS = TrainingParams(
    num_boost_round=40,
    early_stopping_rounds=10,
    bootstrap_resamples=30,
    split=SplitConfig(cv_folds=3),
)


def rows(n: int, seed: int, label: str | None = None) -> list[TrainingRow]:
    return [
        TrainingRow(
            signal_id=s.signal_id,
            symbol=s.symbol,
            timeframe=s.timeframe,
            side=s.side,
            ts=s.ts,
            features=s.features,
            feature_schema_version=s.feature_schema_version,
            closed_at=o.closed_at,
            result=o.result,
            entry_price=o.entry_price,
            exit_price=o.exit_price,
            realised_r=o.realised_r,
            seq=i,
            occurred_at=s.occurred_at,
            label=label if i % 4 == 0 else None,
        )
        for i, (s, o) in enumerate(generate(n, seed=seed, n_features=8))
    ]


@pytest.fixture(scope="module")
def data() -> tuple[list[TrainingRow], list[str]]:
    report, used = check_quality(rows(3000, 5), QualityConfig(min_rows=100))
    assert report.passed, report.errors
    return used, report.feature_names


def test_a_run_learns_the_edge_and_is_deterministic(data) -> None:
    used, names = data
    first = train_model(used, names, PARAMS)
    second = train_model(list(reversed(used)), names, PARAMS)
    assert first.metrics["test"]["roc_auc"] >= 0.65
    assert first.metrics["test"]["roc_auc"] == second.metrics["test"]["roc_auc"]
    assert first.booster.model_to_string() == second.booster.model_to_string()
    assert first.calibrator.to_dict() == second.calibrator.to_dict()
    assert first.parity["max_abs_diff"] <= 1e-5
    counts = first.row_counts
    assert counts["train"] + counts["validation"] + counts["test"] + counts["embargoed"] == 3000
    assert sum(b["n"] for b in first.interval_bins) == counts["validation"]
    assert set(first.reference) == set(names)
    for fold in first.metrics["cv"]["folds"]:
        assert fold["train_end"] < fold["validation_start"]
    assert first.metrics["recommendation"] in {"PROMOTE", "MONITOR", "REJECT"}
    assert first.metrics["production"] is None


def test_baseline_is_evaluated_on_the_same_test_block(data) -> None:
    used, names = data
    result = train_model(
        used, names, PARAMS, baseline=lambda x: np.full(len(x), 0.5), baseline_note="constant"
    )
    production = result.metrics["production"]
    assert production["test"]["n"] == result.metrics["test"]["n"]
    assert production["trading"]["trades"] == 0  # 0.5 never clears 0.55
    assert production["test"]["roc_auc"] == 0.5


def test_rejected_labels_weight_training_rows_only() -> None:
    labelled = rows(3000, 5, label="rejected")
    report, used = check_quality(labelled, QualityConfig(min_rows=100))
    result = train_model(used, report.feature_names, PARAMS)
    assert result.row_counts["train_label_weighted"] > 0
    assert result.metrics["test"]["n"] == result.row_counts["test"]
