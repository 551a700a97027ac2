"""The packed ScoreBatch form in the domain: same answers as the map form, named errors."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scorer_testkit import make_model, reference_distributions

from hindsight.common.errors import InvalidInputError
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.drift import DriftMonitor
from hindsight.scorer.domain.features import FeatureIndex, packed_rows
from hindsight.scorer.domain.models import LoadedModel
from hindsight.scorer.domain.scoring import BatchScores, score_columns, score_packed
from hindsight.scorer.loader import ArtifactLoader
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.unit

NAMES = ("a", "b", "c")


def _with_drift(version: str, *, names: tuple[str, ...] = NAMES, name: str = "m") -> LoadedModel:
    base = make_model(version, name=name)
    card = base.card.model_copy(update={"feature_names": list(names)})
    rng = np.random.default_rng(0)
    reference = {
        "reference_distributions": reference_distributions(rng.normal(size=(500, 3)), list(names))
    }
    drift = DriftMonitor.from_card(list(names), reference, window=1000, min_rows=1)
    return LoadedModel.build(
        base.deployment, card, base.predictor, loaded_at=datetime.now(UTC), drift=drift
    )


def _packed(rows: list[dict[str, float]], order: tuple[str, ...]) -> scoring_pb2.ScoreBatchRequest:
    """Real protobuf: the packed batch of ``rows`` with ``order`` as its feature_names."""
    return scoring_pb2.ScoreBatchRequest(
        feature_names=order,
        requests=[scoring_pb2.ScoreRequest(feature_values=[row[n] for n in order]) for row in rows],
    )


def _score_packed(models: list[LoadedModel], batch: Any, explain: list[bool]) -> BatchScores:
    requests = batch.requests
    return score_packed(
        models,
        feature_names=batch.feature_names,
        values=[r.feature_values for r in requests],
        map_sizes=[len(r.features) for r in requests],
        explain=explain,
    )


def _same(a: BatchScores, b: BatchScores) -> bool:
    """Bit for bit, NaN-safe, signed zeros included."""
    return repr(a) == repr(b) and all(
        [math.copysign(1.0, v) for v in x] == [math.copysign(1.0, v) for v in y]
        for x, y in ((a.p_success, b.p_success), (a.ci_low, b.ci_low), (a.ci_high, b.ci_high))
    )


def test_columns_of_maps_any_order_and_names_the_bad_name() -> None:
    index = FeatureIndex.of(NAMES)
    assert index.columns_of(list(NAMES)) is None  # already in model order: no copy
    assert index.columns_of(["c", "a", "b"]).tolist() == [1, 2, 0]  # type: ignore[union-attr]
    for names, reason in (
        (["a", "b", "a"], "duplicate name 'a'"),
        (["a", "b", "c", "a"], "duplicate name 'a'"),
        (["a", "x", "c"], "unknown feature 'x'"),
        (["a", "b", "c", "x"], "unknown feature 'x'"),
        (["c", "a"], "missing feature 'b'"),
        ([], "missing feature 'a'"),
    ):
        with pytest.raises(InvalidInputError) as info:
            index.columns_of(names)
        assert (info.value.field, info.value.reason) == ("feature_names", reason)


def test_packed_rows_names_the_first_bad_row() -> None:
    good = [1.0, 2.0, 3.0]
    matrix = packed_rows([good, [4.0, 5.0, 6.0]], 3, [0, 0])
    assert matrix.dtype == np.float32 and matrix.tolist() == [[1, 2, 3], [4, 5, 6]]
    for values, sizes, field in (
        ([good, good[:2], good], [0, 0, 0], "requests[1].feature_values"),
        ([good, good, good + [1.0]], [0, 0, 0], "requests[2].feature_values"),
        ([good, good, good], [0, 0, 3], "requests[2].features"),
        ([good, [], good], [0, 3, 0], "requests[1].features"),  # both forms: features named
        ([good, [1.0], good], [0, 0, 2], "requests[1].feature_values"),  # first in order
    ):
        with pytest.raises(InvalidInputError) as info:
            packed_rows(values, 3, sizes)
        assert info.value.field == field


@pytest.mark.parametrize("order", [NAMES, ("c", "a", "b"), ("b", "c", "a")])
def test_packed_equals_map_bit_for_bit_with_mixed_versions(order: tuple[str, ...]) -> None:
    rng = np.random.default_rng(8)
    rows = [
        {"a": float(a), "b": float(b), "c": math.nan if i % 5 == 0 else float(c)}
        for i, (a, b, c) in enumerate(rng.normal(size=(60, 3)).tolist())
    ]
    rows[3]["a"] = 1e-46  # below float32's range: both forms round it the same way
    rows[4]["b"] = -0.0
    explain = [i % 7 == 0 for i in range(len(rows))]
    pick = [i % 3 == 1 for i in range(len(rows))]  # every third row pins v2

    map_models = (_with_drift("v1"), _with_drift("v2"))
    packed_models = (_with_drift("v1"), _with_drift("v2"))
    maps = [scoring_pb2.ScoreRequest(features=row).features for row in rows]
    expected = score_columns([map_models[p] for p in pick], maps, explain)
    got = _score_packed([packed_models[p] for p in pick], _packed(rows, order), explain)
    assert _same(got, expected)
    assert [c is not None for c in got.contributions] == explain
    for mapped, packed in zip(map_models, packed_models, strict=True):
        assert mapped.drift is not None and packed.drift is not None
        np.testing.assert_array_equal(packed.drift.take(), mapped.drift.take())  # same rows
    assert packed_models[0].predictor.calls == 1  # type: ignore[attr-defined]


def test_packed_errors_are_batch_level_first_then_rows_in_order() -> None:
    models = [_with_drift("v1")] * 4
    rows = [{"a": 0.0, "b": 0.0, "c": 0.0} for _ in range(4)]

    def error(batch: Any) -> InvalidInputError:
        with pytest.raises(InvalidInputError) as info:
            _score_packed(models, batch, [False] * 4)
        return info.value

    batch = _packed(rows, ("a", "b", "c"))
    batch.requests[2].feature_values.append(1.0)
    batch.requests[1].features["a"] = 1.0
    assert error(batch).field == "requests[1].features"
    batch.feature_names.append("rsi_14")
    assert error(batch).field == "feature_names"
    assert "'rsi_14'" in error(batch).reason and "'v1'" in error(batch).reason

    batch = _packed(rows, ("a", "b", "c"))
    batch.requests[2].feature_values[0] = math.nan  # column a may not be missing
    assert error(batch).field == "requests[2].features.a"
    batch.requests[2].feature_values[0] = 0.0
    batch.requests[3].feature_values[2] = math.inf
    assert error(batch).field == "requests[3].features.c"
    assert models[0].drift is not None and models[0].drift.take() is None  # nothing recorded


def test_every_model_of_a_packed_batch_must_have_the_names() -> None:
    same, other = _with_drift("v1"), _with_drift("v1", names=("a", "b", "d"), name="other")
    rows = [{"a": 0.0, "b": 0.0, "c": 0.0}] * 3
    with pytest.raises(InvalidInputError) as info:
        _score_packed([same, other, same], _packed(rows, NAMES), [False] * 3)
    assert info.value.field == "feature_names"
    assert info.value.reason == "unknown feature 'c' (model 'other' version 'v1')"
    # Two models that share the feature set may share a packed batch, in any column order.
    twin = _with_drift("v7", names=("c", "b", "a"), name="twin")
    scores = _score_packed([same, twin, same], _packed(rows, NAMES), [False] * 3)
    assert scores.p_success == [0.5, 0.5, 0.5]


def test_packed_equals_map_on_a_real_onnx_model(model_v1, shared_root: Path) -> None:  # type: ignore[no-untyped-def]
    model = ArtifactLoader(shared_root).load(Deployment(**model_v1.deployment()))
    names = model_v1.feature_names
    matrix = np.random.default_rng(12).normal(size=(200, len(names)))
    matrix[::4, 5] = np.nan  # f05 may be missing
    rows = [dict(zip(names, r, strict=True)) for r in matrix.tolist()]
    order = tuple(reversed(names))
    explain = [i % 50 == 0 for i in range(len(rows))]
    maps = [scoring_pb2.ScoreRequest(features=row).features for row in rows]
    expected = score_columns([model] * len(rows), maps, explain)
    got = _score_packed([model] * len(rows), _packed(rows, order), explain)
    assert _same(got, expected)
    assert np.max(np.abs(np.array(got.p_success) - model_v1.p_success(matrix))) <= 1e-6
