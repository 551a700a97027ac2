"""Scoring over a real gRPC port with a separate grpc.aio client (no NATS)."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from scorer_testkit import Artifact, build_artifact, request, stub

from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.intervals import wilson_interval
from hindsight.scorer.loader import ArtifactLoader, ArtifactRefusedError
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.unit

SERVICE = "hindsight.scoring.v1.Scoring"


def features_of(artifact: Artifact, row: np.ndarray) -> dict[str, float]:
    return dict(zip(artifact.feature_names, (float(v) for v in row), strict=True))


@pytest.fixture
async def served(scorer_factory, channel_factory, model_v1, shared_root):  # type: ignore[no-untyped-def]
    app = await scorer_factory(artifact_root=shared_root)
    await app.reconciler.apply(Deployment(**model_v1.deployment()))
    return app, stub(channel_factory(app.grpc.port))


async def test_health_not_serving_until_a_model_is_loaded(  # type: ignore[no-untyped-def]
    scorer_factory, channel_factory, model_v1, shared_root
) -> None:
    app = await scorer_factory(artifact_root=shared_root)
    channel = channel_factory(app.grpc.port)
    health = health_pb2_grpc.HealthStub(channel)
    check = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
        assert (await http.get("/readyz")).status_code == 503
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub(channel).Score(request(features_of(model_v1, np.zeros(6))))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        # The proto documents this prefix; the gateway's `no_model` fallback relies on it.
        assert (info.value.details() or "").startswith("no model")

        await app.reconciler.apply(Deployment(**model_v1.deployment()))
        check = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        assert (await http.get("/readyz")).status_code == 200
        models = (await http.get("/v1/models")).json()
        assert [(m["model_name"], m["version"], m["stage"], m["sha256"]) for m in models] == [
            ("trade_success", model_v1.version, "production", model_v1.sha256)
        ]
        metrics = (await http.get("/metrics")).text
        labels = f'model="trade_success",stage="production",version="{model_v1.version}"'
        assert f"hindsight_scorer_models_loaded{{{labels}}} 1.0" in metrics


async def test_score_equals_onnxruntime_on_the_artifact(served, model_v1) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    rng = np.random.default_rng(11)
    matrix = rng.normal(size=(40, 6)).astype(np.float32)
    matrix[::5, 5] = np.nan  # f05 may be missing
    expected = model_v1.p_success(matrix)
    for i, row in enumerate(matrix):
        answer = await client.Score(request(features_of(model_v1, row), signal_id=f"s{i}"))
        assert answer.signal_id == f"s{i}"
        assert abs(answer.p_success - float(expected[i])) <= 1e-6
        assert answer.p_failure == pytest.approx(1 - answer.p_success)
        assert answer.ci_low <= answer.p_success <= answer.ci_high
        assert answer.model_version == model_v1.version
        assert not answer.fallback and answer.arm == ""
        assert not answer.contributions
        assert answer.prediction_time_ms > 0
    bins = {round(b["lo"], 1): b["n"] for b in _card(model_v1)["interval_bins"]}
    n = bins[math.floor(answer.p_success * 10) / 10]
    assert (answer.ci_low, answer.ci_high) == pytest.approx(wilson_interval(answer.p_success, n))


def _card(artifact: Artifact) -> dict:  # type: ignore[type-arg]
    import json

    return json.loads((artifact.directory / "metrics.json").read_text())  # type: ignore[no-any-return]


async def test_explain_gives_treeshap_contributions(served, model_v1) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    row = np.linspace(-1, 1, 6).astype(np.float32)
    answer = await client.Score(request(features_of(model_v1, row), explain=True))
    raw = model_v1.booster().predict(row.reshape(1, -1).astype(np.float64), raw_score=True)[0]
    assert set(answer.contributions) == {*model_v1.feature_names, "bias"}
    assert sum(answer.contributions.values()) == pytest.approx(raw, abs=1e-9)


async def test_score_batch_matches_onnxruntime_in_order(served, model_v1) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(300, 6)).astype(np.float32)
    batch = scoring_pb2.ScoreBatchRequest(
        requests=[
            request(features_of(model_v1, row), signal_id=f"b{i}", explain=(i == 7))
            for i, row in enumerate(matrix)
        ]
    )
    answer = await client.ScoreBatch(batch)
    expected = model_v1.p_success(matrix)
    assert [r.signal_id for r in answer.responses] == [f"b{i}" for i in range(300)]
    assert np.max(np.abs(np.array([r.p_success for r in answer.responses]) - expected)) <= 1e-6
    assert [bool(r.contributions) for r in answer.responses] == [i == 7 for i in range(300)]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda f, r: f.pop("f02"), "features.f02"),
        (lambda f, r: f.__setitem__("rsi_14", 1.0), "features.rsi_14"),
        (lambda f, r: f.__setitem__("f01", math.nan), "features.f01"),
        (lambda f, r: f.__setitem__("f03", math.inf), "features.f03"),
        (lambda f, r: r.__setitem__("model_name", "no_such_model"), "model_name"),
        (lambda f, r: r.__setitem__("model_version", "19990101T000000Z-000000"), "model_version"),
        (lambda f, r: r.__setitem__("signal_id", ""), "signal_id"),
        (lambda f, r: r.__setitem__("side", "long"), "side"),
    ],
)
async def test_invalid_argument_names_the_field(served, model_v1, mutate, field) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    features = features_of(model_v1, np.zeros(6))
    fields: dict[str, object] = {"signal_id": "s", "side": "sell"}
    mutate(features, fields)
    bad = scoring_pb2.ScoreRequest(features=features, **fields)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Score(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"{field}:")
    good = request(features_of(model_v1, np.zeros(6)))
    for requests, index in (([good, good, bad], 2), ([good] * 40 + [bad] + [good] * 59, 40)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await client.ScoreBatch(scoring_pb2.ScoreBatchRequest(requests=requests))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details().startswith(f"requests[{index}].{field}:")


async def test_score_batch_names_the_first_of_several_bad_requests(served, model_v1) -> None:  # type: ignore[no-untyped-def]
    _, client = served
    rows = [features_of(model_v1, np.full(6, 0.1 * i)) for i in range(30)]
    rows[12]["rsi_14"] = 1.0
    rows[12].pop("f00")
    del rows[21]["f04"]
    batch = scoring_pb2.ScoreBatchRequest(requests=[request(r) for r in rows])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.ScoreBatch(batch)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("requests[12].features.rsi_14:")


async def test_pinned_versions_and_refused_artifacts(served, model_v1, shared_root) -> None:  # type: ignore[no-untyped-def]
    app, client = served
    v2 = build_artifact(shared_root, version="20260102T000000Z-bbbbbb", seed=9)
    await app.reconciler.apply(Deployment(**v2.deployment("canary")))
    row = np.full(6, 0.3, dtype=np.float32)
    default = await client.Score(request(features_of(model_v1, row)))
    pinned = await client.Score(request(features_of(model_v1, row), model_version=v2.version))
    assert default.model_version == model_v1.version
    assert pinned.model_version == v2.version
    assert abs(pinned.p_success - float(v2.p_success(row.reshape(1, -1))[0])) <= 1e-6
    # One batch may mix versions: each row answers with its own, in order.
    pinned_rows = {1, 2, 4}
    batch = scoring_pb2.ScoreBatchRequest(
        requests=[
            request(
                features_of(model_v1, row),
                signal_id=f"m{i}",
                **({"model_version": v2.version} if i in pinned_rows else {}),
            )
            for i in range(6)
        ]
    )
    answer = await client.ScoreBatch(batch)
    assert [r.signal_id for r in answer.responses] == [f"m{i}" for i in range(6)]
    assert [r.model_version for r in answer.responses] == [
        v2.version if i in pinned_rows else model_v1.version for i in range(6)
    ]
    assert [r.p_success for r in answer.responses] == [
        pinned.p_success if i in pinned_rows else default.p_success for i in range(6)
    ]
    # A production deployment whose sha256 does not match is refused; v1 keeps serving.
    bad = {**v2.deployment(), "sha256": "f" * 64}
    await app.reconciler.apply(Deployment(**bad))
    assert (
        await client.Score(request(features_of(model_v1, row)))
    ).model_version == model_v1.version


def test_loader_refuses_bad_artifacts(model_v1, shared_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    loader = ArtifactLoader(shared_root)
    with pytest.raises(ArtifactRefusedError) as info:
        loader.load(Deployment(**{**model_v1.deployment(), "sha256": "0" * 64}))
    assert info.value.reason == "sha256_mismatch"
    with pytest.raises(ArtifactRefusedError) as info:
        loader.load(Deployment(**{**model_v1.deployment(), "artifact_uri": "../../etc"}))
    assert info.value.reason == "outside_root"
    with pytest.raises(ArtifactRefusedError) as info:
        loader.load(Deployment(**{**model_v1.deployment(), "version": "other"}))
    assert info.value.reason == "card_mismatch"
    with pytest.raises(ArtifactRefusedError) as info:
        ArtifactLoader(tmp_path).load(Deployment(**model_v1.deployment()))
    assert info.value.reason == "unreadable"
