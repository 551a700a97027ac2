"""Unit tests of the pure scoring logic (no I/O except the real-artifact contribution test)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from scorer_testkit import BatchItem, make_model, score_batch

from hindsight.common.artifacts import P_MIN, IntervalBin
from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.scorer.domain.deployments import Deployment, DeploymentState
from hindsight.scorer.domain.features import FeatureIndex
from hindsight.scorer.domain.intervals import IntervalTable, wilson_interval
from hindsight.scorer.domain.models import LoadedModel, ModelStore
from hindsight.scorer.domain.scoring import score_columns, score_one
from hindsight.scorer.loader import ArtifactLoader
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.unit

NAMES = ["a", "b", "c"]


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0.3, 0) == (0.0, 1.0)
    for p in (0.0, 0.01, 0.37, 0.99, 1.0):
        lo, hi = wilson_interval(p, 25)
        assert 0.0 <= lo <= p <= hi <= 1.0
    assert wilson_interval(0.5, 1000)[1] - wilson_interval(0.5, 1000)[0] < high - low


def test_interval_table_uses_the_bin_of_p() -> None:
    table = IntervalTable.from_bins([(0.5, 1.0, 0), (0.0, 0.5, 40)])
    assert table.n_at(0.2) == 40
    assert table.n_at(0.5) == 0
    assert table.n_at(1.0) == 0
    assert table.interval(0.7) == (0.0, 1.0)
    assert table.interval(0.2) == wilson_interval(0.2, 40)


def test_feature_index_orders_values_whatever_the_key_order() -> None:
    index = FeatureIndex.of(NAMES)
    assert index.values_in_order({"c": 3.0, "a": 1.0, "b": 2.0}) == [1.0, 2.0, 3.0]
    # Second time the cached order is used; a different order still maps correctly.
    assert index.values_in_order({"c": 6.0, "a": 4.0, "b": 5.0}) == [4.0, 5.0, 6.0]
    assert index.values_in_order({"b": 8.0, "a": 7.0, "c": 9.0}) == [7.0, 8.0, 9.0]


@pytest.mark.parametrize(
    ("features", "field"),
    [
        ({"a": 1.0, "b": 2.0}, "features.c"),
        ({"a": 1.0, "b": 2.0, "c": 3.0, "zz": 1.0}, "features.zz"),
        ({"a": 1.0, "b": 2.0, "x": 3.0}, "features.x"),
    ],
)
def test_feature_names_are_validated(features: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        FeatureIndex.of(NAMES).values_in_order(features, "requests[2].")
    assert info.value.field == f"requests[2].{field}"


def test_nan_only_where_allowed_and_inf_never() -> None:
    index = FeatureIndex.of(NAMES, ["c"])
    index.check_finite(np.array([[1, 2, math.nan]], dtype=np.float32))
    with pytest.raises(InvalidInputError) as info:
        index.check_finite(np.array([[math.nan, 2, 3]], dtype=np.float32))
    assert info.value.field == "features.a"
    assert "NaN" in info.value.reason
    with pytest.raises(InvalidInputError) as info:
        index.check_finite(np.array([[0, 0, 0], [1, 2, math.inf]], dtype=np.float32), [4, 9])
    assert info.value.field == "requests[9].features.c"


def test_deployment_state_fold() -> None:
    def dep(version: str, stage: str) -> Deployment:
        return Deployment("m", version, stage, f"models/m/{version}", "a" * 64)  # type: ignore[arg-type]

    state = DeploymentState.fold(
        [
            dep("v1", "production"),
            dep("v2", "canary"),
            dep("v2", "production"),
            dep("v1", "retired"),
        ]
    )
    assert [(d.version, d.stage) for d in state.wanted()] == [("v2", "production")]
    # Retiring the production version is ignored; a stale canary does not demote it.
    state.apply(dep("v2", "retired"))
    state.apply(dep("v2", "canary"))
    assert [(d.version, d.stage) for d in state.wanted()] == [("v2", "production")]
    state.apply(dep("v3", "production"))
    assert {(d.version, d.stage) for d in state.wanted()} == {
        ("v3", "production"),
        ("v2", "previous"),
    }


def test_store_resolution_errors_name_the_field() -> None:
    store = ModelStore(default_model="m")
    with pytest.raises(UnavailableError):
        store.resolve(None, None)
    store.install(make_model("v1"), serve=True)
    store.install(make_model("v2", stage="canary"), serve=False)
    assert store.resolve(None, None).version == "v1"
    assert store.resolve("m", "v2").version == "v2"
    with pytest.raises(InvalidInputError) as info:
        store.resolve("nope", None)
    assert info.value.field == "model_name"
    with pytest.raises(InvalidInputError) as info:
        store.resolve("nope", "v1")
    assert info.value.field == "model_name"
    with pytest.raises(InvalidInputError) as info:
        store.resolve("m", "v9")
    assert info.value.field == "model_version"
    assert not store.remove("m", "v1")  # never unload what serves
    assert store.remove("m", "v2")
    store.install(make_model("v3"), serve=True)
    assert store.resolve(None, None).version == "v3"
    assert store.get("m", "v1") is not None and store.get("m", "v1").deployment.stage == "previous"


def test_score_one_and_interval() -> None:
    model = make_model()
    score = score_one(model, {"b": 0.5, "a": 0.25, "c": math.nan}, explain=False)
    assert math.isnan(model.row[0, 2])
    score = score_one(model, {"b": 0.5, "a": 0.25, "c": 0.0}, explain=True)
    expected = 1 / (1 + math.exp(-0.75))
    assert score.p_success == pytest.approx(expected, abs=1e-6)
    assert (score.ci_low, score.ci_high) == wilson_interval(score.p_success, 100)
    assert score.contributions == {"a": 0.25, "b": 0.5, "c": 0.0, "bias": 0.0}


def test_score_batch_keeps_order_and_runs_once_per_model() -> None:
    m1, m2 = make_model("v1"), make_model("v2")
    items = [
        BatchItem(m1 if i % 2 else m2, {"a": float(i), "b": 0.0, "c": 0.0}, i == 3)
        for i in range(6)
    ]
    scores = score_batch(items)
    assert [s.p_success for s in scores] == pytest.approx(
        [1 / (1 + math.exp(-i)) for i in range(6)]
    )
    assert [s.contributions is not None for s in scores] == [i == 3 for i in range(6)]
    assert scores[3].contributions == {"a": 3.0, "b": 0.0, "c": 0.0, "bias": 0.0}
    assert m1.predictor.calls == 1 and m2.predictor.calls == 1  # type: ignore[attr-defined]


def test_score_batch_error_names_the_request() -> None:
    model = make_model()
    items = [BatchItem(model, {"a": 1.0, "b": 1.0, "c": 1.0}, False)] * 2
    items.append(BatchItem(model, {"a": math.nan, "b": 1.0, "c": 1.0}, False))
    with pytest.raises(InvalidInputError) as info:
        score_batch(items)
    assert info.value.field == "requests[2].features.a"


def test_contributions_sum_to_the_booster_raw_score(model_v1, shared_root: Path) -> None:  # type: ignore[no-untyped-def]
    model = ArtifactLoader(shared_root).load(Deployment(**model_v1.deployment()))
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(20, 6)).astype(np.float32)
    contributions = model.predictor.contributions(matrix)
    raw = model_v1.booster().predict(matrix.astype(np.float64), raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1), raw, atol=1e-9)
    one = score_one(
        model, dict(zip(model_v1.feature_names, matrix[0].tolist(), strict=True)), explain=True
    )
    assert one.contributions is not None
    assert set(one.contributions) == {*model_v1.feature_names, "bias"}
    assert sum(one.contributions.values()) == pytest.approx(raw[0], abs=1e-9)


def _proto_maps(rows: Sequence[dict[str, float]]) -> list[Mapping[str, float]]:
    """Real protobuf maps: reading a missing key of these inserts a default entry."""
    return [scoring_pb2.ScoreRequest(features=row).features for row in rows]


def test_batch_matrix_from_protobuf_maps_is_in_column_order() -> None:
    rows = _proto_maps([{"c": 3.0 * i, "a": 1.0 * i, "b": 2.0 * i} for i in range(5)])
    matrix = FeatureIndex.of(NAMES).matrix(rows, range(5))
    expected = np.array([[i, 2 * i, 3 * i] for i in range(5)], dtype=np.float32)
    np.testing.assert_array_equal(matrix, expected)
    assert matrix.dtype == np.float32
    assert [len(r) for r in rows] == [3] * 5  # reading added no entry


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"a": 1.0, "b": 2.0}, "features.c"),  # fewer keys: reading c would insert 0.0
        ({"a": 1.0, "b": 2.0, "x": 3.0}, "features.x"),  # as many keys, one unknown
        ({"a": 1.0, "b": 2.0, "c": 3.0, "x": 4.0}, "features.x"),  # one too many
    ],
)
def test_batch_matrix_names_the_first_bad_row(bad: dict[str, float], field: str) -> None:
    good = {"c": 3.0, "a": 1.0, "b": 2.0}
    index = FeatureIndex.of(NAMES)
    for rows in (_proto_maps([good, good, bad, good, bad]), [good, good, bad, good, bad]):
        assert index.fill(rows) is None
        with pytest.raises(InvalidInputError) as info:
            index.matrix(rows, range(10, 15))
        assert info.value.field == f"requests[12].{field}"
        # The single-row reader agrees, on protobuf maps and on dicts.
        with pytest.raises(InvalidInputError) as info:
            index.values_in_order(rows[4])
        assert info.value.field == field


def test_score_batch_error_names_the_first_bad_request_across_models() -> None:
    m1, m2 = make_model("v1"), make_model("v2")
    good = {"a": 1.0, "b": 1.0, "c": 1.0}
    rows = [dict(good) for _ in range(8)]
    rows[5] = {"a": 1.0, "b": 1.0, "zz": 1.0}  # model v1 (odd positions)
    rows[6] = {"a": 1.0, "b": 1.0, "yy": 1.0}  # model v2
    models = [m1 if i % 2 else m2 for i in range(8)]
    with pytest.raises(InvalidInputError) as info:
        score_columns(models, _proto_maps(rows), [False] * 8)
    assert info.value.field == "requests[5].features.zz"


class _ColumnC:
    """p = column c as given (may lie outside [0, 1] or be NaN: c may be missing)."""

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return matrix[:, 2].astype(np.float32)

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        return np.hstack([matrix.astype(np.float64), np.full((len(matrix), 1), 0.5)])


def _model_with_bins(bins: list[tuple[float, float, int]]) -> LoadedModel:
    base = make_model()
    card = base.card.model_copy(
        update={
            "interval_bins": [IntervalBin(lo=lo, hi=hi, n=n, positives=0) for lo, hi, n in bins]
        }
    )
    return LoadedModel.build(base.deployment, card, _ColumnC(), loaded_at=datetime.now(UTC))


@pytest.mark.parametrize(
    "bins",
    [
        [(i / 10, (i + 1) / 10, n) for i, n in enumerate([0, 3, 40, 1, 0, 250, 9, 1000, 2, 0])],
        [(0.0, 1.0, 17)],
        [],
    ],
)
def test_batch_scores_equal_single_scores_bit_for_bit(bins: list[tuple[float, float, int]]) -> None:
    model = _model_with_bins(bins)
    edges = [-0.5, -0.0, 0.0, 1e-9, 0.05, 0.1, 0.2999, 0.3, 0.5, 0.7, 0.99, 0.999999, 1.0, 1.5]
    ps = [*edges, math.nan, *np.random.default_rng(4).random(200).tolist()]
    rows = [{"a": 0.25, "b": -1.0, "c": p} for p in ps]
    explain = [i % 7 == 0 for i in range(len(rows))]
    batch = score_batch([BatchItem(model, r, e) for r, e in zip(rows, explain, strict=True)])
    for row, flag, got in zip(rows, explain, batch, strict=True):
        one = score_one(model, row, explain=flag)
        assert (got.p_success, got.ci_low, got.ci_high) == (one.p_success, one.ci_low, one.ci_high)
        assert [math.copysign(1.0, v) for v in (got.ci_low, got.ci_high)] == [
            math.copysign(1.0, v) for v in (one.ci_low, one.ci_high)
        ]
        assert repr(got.contributions) == repr(one.contributions)  # NaN-safe equality
    assert batch[0].p_success == P_MIN  # below 0, clipped to the floor
    assert batch[12].p_success == batch[13].p_success == 1.0 - P_MIN


def test_no_answer_is_a_certainty_even_when_the_model_says_so() -> None:
    """A model whose output saturates (an artifact made before the trainer clipped in the
    graph) still never answers p_success 0 or 1, on the single and the batch path."""
    model = make_model()
    sure = {"a": 60.0, "b": 60.0, "c": 0.0}  # float32 sigmoid(120) == 1.0
    never = {"a": -60.0, "b": -60.0, "c": 0.0}  # == 0.0
    assert model.predictor.predict(np.array([[60.0, 60.0, 0.0]]))[0] == 1.0
    singles = [score_one(model, f, explain=False) for f in (sure, never)]
    batch = score_batch([BatchItem(model, f, False) for f in (sure, never)])
    for score in [*singles, *batch]:
        assert P_MIN <= score.p_success <= 1.0 - P_MIN
    assert singles[0].p_success == batch[0].p_success == pytest.approx(1.0 - P_MIN)
    assert singles[1].p_success == batch[1].p_success == pytest.approx(P_MIN)
