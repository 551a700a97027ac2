"""Packed ScoreBatch (``feature_names`` + ``feature_values``): in-process and on a real port."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from scorer_testkit import Artifact, build_artifact, request, stub

from hindsight.scorer.dataplane import DataPlane
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.models import ModelStore
from hindsight.scorer.grpc_api import ScoringServicer
from hindsight.scorer.loader import ArtifactLoader
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.unit


def _rows(artifact: Artifact, n: int, *, seed: int = 3) -> list[dict[str, float]]:
    matrix = np.random.default_rng(seed).normal(size=(n, len(artifact.feature_names)))
    matrix[::6, 5] = np.nan  # f05 may be missing
    return [dict(zip(artifact.feature_names, r, strict=True)) for r in matrix.tolist()]


def _batches(
    rows: list[dict[str, float]], order: list[str], **per_row: Any
) -> tuple[scoring_pb2.ScoreBatchRequest, scoring_pb2.ScoreBatchRequest]:
    """The same rows as a map batch and as a packed batch (``per_row[k](i)``: field k)."""

    def fields(i: int) -> dict[str, Any]:
        return {k: f(i) for k, f in per_row.items() if f(i) is not None}

    as_map = scoring_pb2.ScoreBatchRequest(
        requests=[request(row, signal_id=f"r{i}", **fields(i)) for i, row in enumerate(rows)]
    )
    packed = scoring_pb2.ScoreBatchRequest(
        feature_names=order,
        requests=[
            scoring_pb2.ScoreRequest(
                signal_id=f"r{i}", side="buy", feature_values=[row[n] for n in order], **fields(i)
            )
            for i, row in enumerate(rows)
        ],
    )
    return as_map, packed


def _without_times(answer: Any) -> bytes:
    for one in answer.responses:
        one.prediction_time_ms = 0.0
    return bytes(answer.SerializeToString(deterministic=True))


@pytest.fixture
async def served(scorer_factory, channel_factory, model_v1, shared_root):  # type: ignore[no-untyped-def]
    app = await scorer_factory(artifact_root=shared_root)
    await app.reconciler.apply(Deployment(**model_v1.deployment()))
    return app, stub(channel_factory(app.grpc.port))


class _Context:
    """What the servicer reads from a grpc.aio context: the call's metadata."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class _Log:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float]] = []

    def record_many(self, ids: list[str], versions: list[str], ps: Any, ms: float) -> None:
        assert ms > 0
        self.rows += zip(ids, versions, ps, strict=True)


async def test_in_process_packed_answers_and_logs_like_the_map_form(  # type: ignore[no-untyped-def]
    model_v1, shared_root: Path
) -> None:
    store = ModelStore(default_model="trade_success")
    store.install(ArtifactLoader(shared_root).load(Deployment(**model_v1.deployment())), serve=True)
    log = _Log()
    servicer = ScoringServicer(DataPlane(store, log))  # type: ignore[arg-type]
    rows = _rows(model_v1, 120)
    order = sorted(model_v1.feature_names, reverse=True)
    as_map, packed = _batches(rows, order, explain=lambda i: i % 40 == 0 or None)
    expected = await servicer.ScoreBatch(as_map, _Context())
    logged_map = list(log.rows)
    got = await servicer.ScoreBatch(packed, _Context())
    assert _without_times(got) == _without_times(expected)
    assert log.rows[len(logged_map) :] == logged_map  # one record per row, the same ones
    assert [bool(r.contributions) for r in got.responses] == [i % 40 == 0 for i in range(120)]


async def test_packed_batch_equals_the_map_batch_over_the_wire(served, model_v1) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    rows = _rows(model_v1, 300)
    for order in (
        model_v1.feature_names,
        [*model_v1.feature_names[3:], *model_v1.feature_names[:3]],
    ):
        as_map, packed = _batches(rows, order, explain=lambda i: i == 7 or None)
        expected = await client.ScoreBatch(as_map)
        got = await client.ScoreBatch(packed)
        assert all(r.prediction_time_ms > 0 for r in got.responses)
        assert _without_times(got) == _without_times(expected)
    matrix = np.array([[row[n] for n in model_v1.feature_names] for row in rows])
    p = np.array([r.p_success for r in got.responses])
    assert np.max(np.abs(p - model_v1.p_success(matrix))) <= 1e-6
    assert [bool(r.contributions) for r in got.responses] == [i == 7 for i in range(300)]


def _packed_of(artifact: Artifact, n: int = 5) -> scoring_pb2.ScoreBatchRequest:
    return _batches(_rows(artifact, n, seed=1), list(artifact.feature_names))[1]


def _unknown(b: Any) -> None:
    b.feature_names[2] = "rsi_14"


def _missing(b: Any) -> None:
    del b.feature_names[4]
    for one in b.requests:
        del one.feature_values[4]


def _duplicate(b: Any) -> None:
    b.feature_names.append("f01")
    for one in b.requests:
        one.feature_values.append(0.0)


def _short(b: Any) -> None:
    del b.requests[3].feature_values[-1]


def _long(b: Any) -> None:
    b.requests[3].feature_values.append(1.0)


def _both(b: Any) -> None:
    b.requests[3].features["f00"] = 1.0


def _no_names(b: Any) -> None:
    del b.feature_names[:]


def _nan(b: Any) -> None:
    b.requests[3].feature_values[1] = math.nan  # f01 may not be missing


def _inf(b: Any) -> None:
    b.requests[3].feature_values[5] = -math.inf


def _side(b: Any) -> None:
    b.requests[3].side = "long"


@pytest.mark.parametrize(
    ("mutate", "field", "says"),
    [
        (_unknown, "feature_names", "unknown feature 'rsi_14'"),
        (_missing, "feature_names", "missing feature 'f04'"),
        (_duplicate, "feature_names", "duplicate name 'f01'"),
        (_short, "requests[3].feature_values", "has 5 values, feature_names has 6"),
        (_long, "requests[3].feature_values", "has 7 values"),
        (_both, "requests[3].features", "feature_values only"),
        (_no_names, "requests[0].feature_values", "without feature_names"),
        (_nan, "requests[3].features.f01", "NaN"),
        (_inf, "requests[3].features.f05", "finite"),
        (_side, "requests[3].side", "buy, sell, hold"),
    ],
)
async def test_malformed_packed_batches_are_invalid_argument_naming_the_field(  # type: ignore[no-untyped-def]
    served, model_v1, mutate, field, says
) -> None:
    _, client = served
    batch = _packed_of(model_v1)
    await client.ScoreBatch(batch)  # valid as built
    mutate(batch)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.ScoreBatch(batch)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    assert details.startswith(f"{field}:") and says in details


async def test_score_takes_no_packed_values(served, model_v1) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    one = _packed_of(model_v1, 1).requests[0]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Score(one)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("feature_values:")
    # Also when the map is complete: a caller must not believe its packed values counted.
    one.features.update(_rows(model_v1, 1)[0])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Score(one)
    assert (info.value.details() or "").startswith("feature_values:")


async def test_packed_batch_mixes_models_and_pinned_versions(  # type: ignore[no-untyped-def]
    served, model_v1, shared_root
) -> None:
    app, client = served
    v2 = build_artifact(shared_root, version="20260102T000000Z-pk0002", seed=9)
    other = build_artifact(
        shared_root, model_name="other_model", version="20260103T000000Z-pk0003", seed=4
    )
    wider = build_artifact(
        shared_root, model_name="wider", version="20260104T000000Z-pk0004", n_features=7
    )
    await app.reconciler.apply(Deployment(**v2.deployment("canary")))
    await app.reconciler.apply(Deployment(**other.deployment()))
    await app.reconciler.apply(Deployment(**wider.deployment()))
    rows = _rows(model_v1, 12)
    rows = [{**r, "f05": 0.5} for r in rows]  # other_model allows no NaN
    order = list(reversed(model_v1.feature_names))

    def version(i: int) -> str | None:
        return v2.version if i % 4 == 1 else None

    def name(i: int) -> str | None:
        return other.model_name if i % 4 == 2 else None

    as_map, packed = _batches(rows, order, model_version=version, model_name=name)
    expected = await client.ScoreBatch(as_map)
    got = await client.ScoreBatch(packed)
    assert _without_times(got) == _without_times(expected)
    wanted = {0: model_v1.version, 1: v2.version, 2: other.version, 3: model_v1.version}
    assert [r.model_version for r in got.responses] == [wanted[i % 4] for i in range(12)]
    for artifact, index in ((model_v1, 0), (v2, 1), (other, 2)):
        row = np.array([[rows[index][n] for n in model_v1.feature_names]])
        assert abs(got.responses[index].p_success - artifact.p_success(row)[0]) <= 1e-6

    # A model with another feature set cannot share the batch: the names are wrong for it.
    packed.requests[4].model_name = wider.model_name
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.ScoreBatch(packed)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("feature_names: missing feature 'f06'")
    assert "'wider'" in (info.value.details() or "")
