"""The scorer with a real NATS JetStream: hot-load, refusal, replay, cache, prediction log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import nats
import numpy as np
import pytest
from fastapi import FastAPI
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy
from scorer_testkit import Artifact, build_artifact, closed_port, request, stub

from hindsight.common.artifacts import ONNX_FILE
from hindsight.common.events import ModelDeployed
from hindsight.common.http import HttpServer
from hindsight.devstack.servers import NatsServer, start_server
from hindsight.scorer.metrics import LOAD_FAILURES
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.integration


async def publish_deployed(nats_client: NatsClient, artifact: Artifact, **fields: Any) -> None:
    """Publish model.deployed with a plain NATS client (as the registry would)."""
    body = {**artifact.deployment(), **fields}
    event = ModelDeployed.create(source="test-registry", **body)
    await nats_client.jetstream().publish(
        event.subject, event.to_json_bytes(), headers={"Nats-Msg-Id": event.idempotency_key()}
    )


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
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


def features(artifact: Artifact, value: float = 0.2) -> dict[str, float]:
    return dict.fromkeys(artifact.feature_names, value)


async def served_version(client: Any, artifact: Artifact) -> str:
    answer = await client.Score(request(features(artifact)))
    return str(answer.model_version)


async def test_hot_load_refusal_and_replay(  # type: ignore[no-untyped-def]
    nats_url, nats_client, jetstream_reset, scorer_factory, channel_factory, artifact_root, tmp_path
) -> None:
    v1 = build_artifact(artifact_root, version="20260101T000000Z-111111", n_trees=10)
    v2 = build_artifact(artifact_root, version="20260103T000000Z-222222", n_trees=10, seed=2)
    bad = build_artifact(artifact_root, version="20260102T000000Z-badbad", n_trees=10, seed=3)
    with (bad.directory / ONNX_FILE).open("ab") as handle:
        handle.write(b"corruption")  # sha256 no longer matches the event and the card

    app = await scorer_factory(artifact_root=artifact_root, nats_url=nats_url)
    client = stub(channel_factory(app.grpc.port))
    assert app.store.empty

    await publish_deployed(nats_client, v1, stage="production")
    await eventually(lambda: _is(served_version(client, v1), v1.version))
    answer = await client.Score(request(features(v1)))
    row = np.full((1, 6), 0.2, dtype=np.float32)
    assert abs(answer.p_success - float(v1.p_success(row)[0])) <= 1e-6

    refused_before = LOAD_FAILURES.labels("trade_success", "sha256_mismatch")._value.get()
    await publish_deployed(nats_client, bad, stage="production", previous_version=v1.version)
    await eventually(
        lambda: _true(
            LOAD_FAILURES.labels("trade_success", "sha256_mismatch")._value.get() > refused_before
        )
    )
    assert await served_version(client, v1) == v1.version  # the old version still serves

    await publish_deployed(nats_client, v2, stage="production", previous_version=v1.version)
    await publish_deployed(nats_client, v1, stage="retired")
    await eventually(lambda: _is(served_version(client, v1), v2.version))
    await eventually(lambda: _true(app.store.get("trade_success", v1.version) is None))

    # A new instance, same NATS, no new event, no local cache: the replay decides.
    await app.stop()
    again = await scorer_factory(
        artifact_root=artifact_root, nats_url=nats_url, data_dir=tmp_path / "fresh"
    )
    assert again.reconciler.source == "jetstream"
    client2 = stub(channel_factory(again.grpc.port))
    assert await served_version(client2, v2) == v2.version


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


async def _true(value: bool) -> bool:
    return value


async def test_starts_from_the_cache_with_nats_down(  # type: ignore[no-untyped-def]
    scorer_factory, channel_factory, model_v1, shared_root, tmp_path: Path
) -> None:
    data_dir = tmp_path / "cached"
    cache = data_dir / "scorer" / "deployments.json"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"deployments": [model_v1.deployment()]}))
    app = await scorer_factory(
        artifact_root=shared_root,
        nats_url=f"nats://127.0.0.1:{closed_port()}",
        data_dir=data_dir,
        nats_grace_s=0.3,
    )
    assert app.reconciler.source == "cache"
    client = stub(channel_factory(app.grpc.port))
    answer = await client.Score(request(features(model_v1)))
    assert answer.model_version == model_v1.version
    assert app.log is not None and app.log.backlog == 1  # kept for when NATS comes back


async def test_starts_from_the_registry_with_nats_down(  # type: ignore[no-untyped-def]
    scorer_factory, channel_factory, model_v1, shared_root
) -> None:
    registry = FastAPI()

    @registry.get("/v1/deployments")
    async def deployments() -> list[dict[str, Any]]:
        return [model_v1.deployment()]

    server = HttpServer(registry, host="127.0.0.1", port=0)
    await server.start()
    try:
        app = await scorer_factory(
            artifact_root=shared_root,
            nats_url=f"nats://127.0.0.1:{closed_port()}",
            nats_grace_s=0.3,
            registry_url=f"http://127.0.0.1:{server.port}",
        )
    finally:
        await server.stop()
    assert app.reconciler.source == "registry"
    client = stub(channel_factory(app.grpc.port))
    assert await served_version(client, model_v1) == model_v1.version
    assert app.settings.cache_path.exists()  # what serves is cached for the next start


async def test_prediction_logged_only_for_calls_the_gateway_did_not_log(  # type: ignore[no-untyped-def]
    nats_url, nats_client, jetstream_reset, scorer_factory, channel_factory, model_v1, shared_root
) -> None:
    app = await scorer_factory(artifact_root=shared_root, nats_url=nats_url)
    client = stub(channel_factory(app.grpc.port))
    await publish_deployed(nats_client, model_v1, stage="production")
    await eventually(lambda: _is(served_version(client, model_v1), model_v1.version))

    await client.Score(
        request(features(model_v1), signal_id="via-gateway"),
        metadata=(("x-hindsight-logged-by", "gateway"),),
    )
    await client.ScoreBatch(
        scoring_pb2.ScoreBatchRequest(
            requests=[request(features(model_v1), signal_id=f"gw-batch-{i}") for i in range(2)]
        ),
        metadata=(("x-hindsight-logged-by", "gateway"),),
    )
    batch = await client.ScoreBatch(
        scoring_pb2.ScoreBatchRequest(
            requests=[request(features(model_v1), signal_id=f"batch-{i}") for i in range(3)]
        )
    )
    await client.Score(request(features(model_v1), signal_id="direct"))
    # The packed form logs exactly like the map form: one record per row, unless marked.
    packed = [
        scoring_pb2.ScoreBatchRequest(
            feature_names=model_v1.feature_names,
            requests=[
                scoring_pb2.ScoreRequest(
                    signal_id=f"{prefix}-{i}",
                    side="buy",
                    feature_values=[0.1 * i] * len(model_v1.feature_names),
                )
                for i in range(2)
            ],
        )
        for prefix in ("packed", "gw-packed")
    ]
    await client.ScoreBatch(packed[1], metadata=(("x-hindsight-logged-by", "gateway"),))
    packed_answer = await client.ScoreBatch(packed[0])  # logged after the marked one would be

    seen: dict[str, dict[str, Any]] = {}
    sub = await nats_client.jetstream().subscribe(
        "prediction.logged",
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        deadline = time.monotonic() + 10
        wanted = {"direct", "batch-0", "batch-1", "batch-2", "packed-0", "packed-1"}
        while not wanted <= set(seen) and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=1)
            except TimeoutError:
                continue
            body = json.loads(msg.data)
            seen[body["signal_id"]] = body
    finally:
        await sub.unsubscribe()
    assert "direct" in seen
    assert "via-gateway" not in seen
    assert not {"gw-batch-0", "gw-batch-1", "gw-packed-0", "gw-packed-1"} & set(seen)
    for i, answer in enumerate(packed_answer.responses):
        assert seen[f"packed-{i}"]["p_success"] == answer.p_success
        assert seen[f"packed-{i}"]["model_version"] == model_v1.version
    for i, answer in enumerate(batch.responses):  # one record per batch row
        assert seen[f"batch-{i}"]["p_success"] == answer.p_success
        assert seen[f"batch-{i}"]["model_version"] == model_v1.version
        assert seen[f"batch-{i}"]["latency_ms"] > 0
    logged = seen["direct"]
    assert logged["model_version"] == model_v1.version
    assert logged["fallback"] is False
    assert logged["latency_ms"] > 0
    assert 0 <= logged["p_success"] <= 1


async def test_nats_that_comes_up_later_is_picked_up(  # type: ignore[no-untyped-def]
    scorer_factory, channel_factory, model_v1, shared_root, tmp_path: Path
) -> None:
    port = closed_port()
    app = await scorer_factory(
        artifact_root=shared_root, nats_url=f"nats://127.0.0.1:{port}", nats_grace_s=0.2
    )
    assert app.store.empty  # NATS, registry and cache all empty: serving nothing, not crashed
    server = NatsServer(
        store_dir=tmp_path / "nats",
        port=port,
        monitor_port=closed_port(),
        log_file=tmp_path / "nats.log",
        server_name="scorer-late",
        port_env=None,
        monitor_port_env=None,
    )
    running = await asyncio.to_thread(start_server, server)
    try:
        client = await nats.connect(server.url)
        try:
            await eventually(lambda: _true(app.feed is not None and app.feed.replayed.is_set()))
            await publish_deployed(client, model_v1, stage="production")
            grpc_client = stub(channel_factory(app.grpc.port))
            await eventually(lambda: _is(served_version(grpc_client, model_v1), model_v1.version))
        finally:
            await client.close()
    finally:
        await app.stop()
        await asyncio.to_thread(running.stop)
