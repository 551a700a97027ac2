"""Family releases through the whole scorer: real NATS JetStream, a real gRPC port, a
client from the generated stubs. Every head equals the member files run directly with
ONNX Runtime; bad input is INVALID_ARGUMENT naming the field; a new release hot-swaps in,
a corrupt one is refused while the old one serves; prediction.logged carries the family.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from family_testkit import FamilyRelease, build_family, rows_of
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy
from scorer_testkit import build_artifact, closed_port, request, stub

from hindsight.common.events import ModelDeployed
from hindsight.scorer.metrics import LOAD_FAILURES
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.integration

TOL = 1e-6
GATEWAY = (("x-hindsight-logged-by", "gateway"),)


async def publish(nats_client: NatsClient, deployment: dict[str, Any], **fields: Any) -> None:
    """model.deployed as the registry publishes it."""
    event = ModelDeployed.create(source="test-registry", **{**deployment, **fields})
    await nats_client.jetstream().publish(
        event.subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.idempotency_key()}
    )


async def eventually(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await check():
                return
        except grpc.aio.AioRpcError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def predict(features: dict[str, float], **fields: Any) -> scoring_pb2.PredictRequest:
    fields.setdefault("signal_id", "sig")
    fields.setdefault("side", "buy")
    return scoring_pb2.PredictRequest(features=features, **fields)


def check_heads(answer: Any, release: FamilyRelease, features: dict[str, float], cluster: str):  # type: ignore[no-untyped-def]
    expected = release.expected(features, cluster)
    for head, want in expected.items():
        got = answer.heads[head]
        assert abs(got.value - want["value"]) <= TOL, head
        assert (got.member, got.model_version) == (want["member"], want["version"])
        assert list(got.alphas) == want["alphas"]
        assert (
            max(
                (abs(a - b) for a, b in zip(got.quantiles, want["quantiles"], strict=True)),
                default=0.0,
            )
            <= TOL
        )
    assert answer.conf_pat == answer.heads["entry"].value
    assert answer.sl_katr == answer.heads["risk"].value
    assert answer.rr_target == answer.heads["rr"].value
    assert answer.offset_katr == answer.heads["offset"].value
    assert answer.entry_style == ("LIMIT" if answer.offset_katr < 0 else "STOP")
    assert answer.family == release.family and answer.family_version == release.version
    assert not answer.fallback


async def invalid(call: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return info.value.details() or ""


async def test_family_release_served_checked_swapped_and_logged(  # type: ignore[no-untyped-def]
    nats_url,
    nats_client,
    jetstream_reset,
    scorer_factory,
    channel_factory,
    artifact_root,
    tmp_path: Path,
) -> None:
    v1 = build_family(artifact_root, version="v1_0_0", seed=1)
    v2 = build_family(
        artifact_root,
        version="v1_1_0",
        seed=2,
        routing={"H": "entry_pooled", "M": "entry_M", "L": "entry_L"},
        carried={"offset": "v1_0_0"},
    )
    bad = build_family(artifact_root, version="v1_0_1", seed=3)
    model_v1 = build_artifact(artifact_root, version="20260101T000000Z-fam001", n_trees=10)
    with (bad.directory / "entry_L.onnx").open("ab") as handle:
        handle.write(b"tampered")  # no longer the card's sha256

    data_dir = tmp_path / "data"
    app = await scorer_factory(artifact_root=artifact_root, nats_url=nats_url, data_dir=data_dir)
    client = stub(channel_factory(app.grpc.port))
    rows = rows_of(24, seed=7, nan_every=5)
    clusters = ["H", "M", "L", ""] * 6

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.Predict(predict(rows[0]))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (info.value.details() or "").startswith("no model")  # the gateway's no_model

    await publish(nats_client, v1.deployment())

    async def serving(version: str) -> bool:
        return (await client.Predict(predict(rows[0]))).family_version == version

    await eventually(lambda: serving("v1_0_0"))

    # Every head of every request equals the member files' own output.
    for i, (features, cluster) in enumerate(zip(rows, clusters, strict=True)):
        answer = await client.Predict(
            predict(features, signal_id=f"one-{i}", liquidity_cluster=cluster)
        )
        assert answer.signal_id == f"one-{i}" and answer.liquidity_cluster == cluster
        check_heads(answer, v1, features, cluster)
    batch = await client.PredictBatch(
        scoring_pb2.PredictBatchRequest(
            requests=[
                predict(f, signal_id=f"batch-{i}", liquidity_cluster=c, side="sell")
                for i, (f, c) in enumerate(zip(rows, clusters, strict=True))
            ]
        )
    )
    assert [r.signal_id for r in batch.responses] == [f"batch-{i}" for i in range(len(rows))]
    for answer, features, cluster in zip(batch.responses, rows, clusters, strict=True):
        assert answer.side == "sell"
        check_heads(answer, v1, features, cluster)

    # Bad input: INVALID_ARGUMENT naming the field (the batch names the request).
    features = rows[1]
    assert (await invalid(client.Predict(predict(features, side="hold")))).startswith("side")
    assert (await invalid(client.Predict(predict(features, family="nope")))).startswith("family")
    assert (await invalid(client.Predict(predict(features, family_version="v3_0_0")))).startswith(
        "family_version"
    )
    assert (await invalid(client.Predict(predict(features, liquidity_cluster="XL")))).startswith(
        "liquidity_cluster"
    )
    assert (await invalid(client.Predict(predict({**features, "rsi_14": 1.0})))).startswith(
        "features.rsi_14"
    )
    missing = {k: v for k, v in features.items() if k != "f3"}
    assert (await invalid(client.Predict(predict(missing)))).startswith("features.f3")
    nan_f0 = {**features, "f0": float("nan")}
    details = await invalid(
        client.PredictBatch(
            scoring_pb2.PredictBatchRequest(requests=[predict(features), predict(nan_f0)])
        )
    )
    assert details.startswith("requests[1].features.f0")

    # A corrupt release is refused and counted; the serving one keeps answering.
    refused_before = LOAD_FAILURES.labels("playbook", "sha256_mismatch")._value.get()
    await publish(nats_client, bad.deployment(), previous_version="v1_0_0")
    await eventually(
        lambda: _true(
            LOAD_FAILURES.labels("playbook", "sha256_mismatch")._value.get() > refused_before
        )
    )
    assert await serving("v1_0_0")

    # Hot swap to a new release; the replaced one stays callable pinned until retired.
    await publish(nats_client, v2.deployment(), previous_version="v1_0_0")
    await eventually(lambda: serving("v1_1_0"))
    for features, cluster in zip(rows[:8], clusters[:8], strict=True):
        answer = await client.Predict(predict(features, liquidity_cluster=cluster))
        check_heads(answer, v2, features, cluster)
    assert answer.heads["offset"].model_version == "v1_0_0"  # a member carried over
    pinned = await client.Predict(predict(rows[2], family_version="v1_0_0", liquidity_cluster="L"))
    check_heads(pinned, v1, rows[2], "L")
    await publish(nats_client, v1.deployment("retired"))
    await eventually(lambda: _true(app.families.get("playbook", "v1_0_0") is None))
    assert (await invalid(client.Predict(predict(rows[2], family_version="v1_0_0")))).startswith(
        "family_version"
    )

    # A single model next to the family: Score is unchanged.
    await publish(nats_client, model_v1.deployment())
    score_features = dict.fromkeys(model_v1.feature_names, 0.1)

    async def scores() -> bool:
        return (await client.Score(request(score_features))).model_version == model_v1.version

    await eventually(scores)
    assert (await client.Predict(predict(rows[0]))).family_version == "v1_1_0"

    # prediction.logged: the family and its release, only for calls the gateway did not mark.
    # The marked calls come first: had they been logged, they would be read before the rest.
    await client.Predict(predict(rows[3], signal_id="fam-gateway"), metadata=GATEWAY)
    await client.PredictBatch(
        scoring_pb2.PredictBatchRequest(requests=[predict(rows[0], signal_id="fam-gw-batch")]),
        metadata=GATEWAY,
    )
    direct = await client.Predict(predict(rows[3], signal_id="fam-direct"))
    logged_batch = await client.PredictBatch(
        scoring_pb2.PredictBatchRequest(
            requests=[predict(rows[i], signal_id=f"fam-batch-{i}") for i in range(2)]
        )
    )
    seen = await logged(nats_client, {"fam-direct", "fam-batch-0", "fam-batch-1"})
    assert "fam-gateway" not in seen and "fam-gw-batch" not in seen
    for signal_id, answer in [
        ("fam-direct", direct),
        ("fam-batch-0", logged_batch.responses[0]),
        ("fam-batch-1", logged_batch.responses[1]),
    ]:
        body = seen[signal_id]
        assert body["model_name"] == "playbook" and body["model_version"] == "v1_1_0"
        assert body["p_success"] == answer.conf_pat
        assert body["fallback"] is False and body["latency_ms"] > 0

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
        families = (await http.get("/v1/families")).json()
        assert [(f["family"], f["version"], f["stage"], f["sha256"]) for f in families] == [
            ("playbook", "v1_1_0", "production", v2.sha256)
        ]
        metrics = (await http.get("/metrics")).text
    labels = 'family="playbook",stage="production",version="v1_1_0"'
    assert f"hindsight_scorer_families_loaded{{{labels}}} 1.0" in metrics
    assert 'hindsight_scorer_predict_seconds_count{family="playbook",method="Predict"' in metrics
    assert 'hindsight_scorer_requests_total{code="OK",method="PredictBatch"}' in metrics

    # Restart with NATS down: the cache brings the release (and the model) back.
    await app.stop()
    again = await scorer_factory(
        artifact_root=artifact_root,
        nats_url=f"nats://127.0.0.1:{closed_port()}",
        nats_grace_s=0.3,
        data_dir=data_dir,
    )
    assert again.reconciler.source == "cache"
    client2 = stub(channel_factory(again.grpc.port))
    answer = await client2.Predict(predict(rows[4], liquidity_cluster="M"))
    check_heads(answer, v2, rows[4], "M")
    assert (await client2.Score(request(score_features))).model_version == model_v1.version


async def logged(nats_client: NatsClient, wanted: set[str]) -> dict[str, dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    sub = await nats_client.jetstream().subscribe(
        "prediction.logged",
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        deadline = time.monotonic() + 10
        while not wanted <= set(seen) and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=1)
            except TimeoutError:
                continue
            body = json.loads(msg.data)
            seen[body["signal_id"]] = body
    finally:
        await sub.unsubscribe()
    return seen


async def _true(value: bool) -> bool:
    return value
