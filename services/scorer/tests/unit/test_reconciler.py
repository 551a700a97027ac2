"""The reconciler and the prediction log, with a fake loader (no artifacts, no NATS)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from faststream.nats import NatsBroker
from scorer_testkit import LinearPredictor, make_model

from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.models import LoadedModel, ModelStore
from hindsight.scorer.loader import ArtifactRefusedError
from hindsight.scorer.messaging import PredictionLog
from hindsight.scorer.metrics import PREDICTIONS_UNLOGGED
from hindsight.scorer.reconciler import Reconciler
from hindsight.scorer.sources import DeploymentCache

pytestmark = pytest.mark.unit


class FakeLoader:
    """Loads every version except the ones listed as corrupt."""

    def __init__(self, corrupt: set[str]) -> None:
        self.corrupt = corrupt
        self.loads: list[str] = []

    def load(self, deployment: Deployment) -> LoadedModel:
        self.loads.append(deployment.version)
        if deployment.version in self.corrupt:
            raise ArtifactRefusedError("bad sha", reason="sha256_mismatch")
        model = make_model(deployment.version, name=deployment.model_name)
        return LoadedModel.build(
            deployment, model.card, LinearPredictor(), loaded_at=datetime.now(UTC)
        )


def dep(version: str, stage: str) -> Deployment:
    return Deployment("m", version, stage, f"models/m/{version}", "a" * 64)  # type: ignore[arg-type]


async def test_refused_production_keeps_the_old_version_and_cache_follows(tmp_path: Path) -> None:
    store = ModelStore(default_model="m")
    cache = DeploymentCache(tmp_path / "scorer" / "deployments.json")
    reconciler = Reconciler(store, FakeLoader({"v2"}), cache)
    await reconciler.replace_state([dep("v1", "production")], source="jetstream")
    assert store.resolve(None, None).version == "v1"
    await reconciler.apply(dep("v2", "production"))
    await reconciler.apply(dep("v1", "retired"))  # never unload what serves
    assert store.resolve(None, None).version == "v1"
    saved = json.loads(cache.path.read_text())["deployments"]
    assert [(d["version"], d["stage"]) for d in saved] == [("v1", "production")]
    await reconciler.apply(dep("v3", "production"))
    await reconciler.apply(dep("v1", "retired"))
    assert store.resolve(None, None).version == "v3"
    assert store.get("m", "v1") is None
    assert [d.version for d in cache.load() or []] == ["v3"]


async def test_fresh_start_with_refused_production_serves_the_previous_one(
    tmp_path: Path,
) -> None:
    store = ModelStore(default_model="m")
    loader = FakeLoader({"v2"})
    reconciler = Reconciler(store, loader, DeploymentCache(tmp_path / "c.json"))
    history = [dep("v1", "production"), dep("v2", "production")]
    await reconciler.replace_state(history, source="jetstream")
    assert store.resolve(None, None).version == "v1"
    assert loader.loads.count("v2") == 1  # a refused artifact is not retried in a loop


async def test_fallback_sources_never_override_jetstream(tmp_path: Path) -> None:
    store = ModelStore(default_model="m")
    reconciler = Reconciler(store, FakeLoader(set()), DeploymentCache(tmp_path / "c.json"))
    await reconciler.replace_state([dep("v2", "production")], source="jetstream")
    await reconciler.replace_state([dep("v1", "production")], source="cache", fallback=True)
    assert store.resolve(None, None).version == "v2"


async def test_prediction_log_drops_oldest_and_counts_while_nats_is_down() -> None:
    broker = NatsBroker("nats://127.0.0.1:1")  # never connected
    log = PredictionLog(broker, capacity=2, max_in_flight=10)
    before = PREDICTIONS_UNLOGGED.labels("queue_full")._value.get()
    for i in range(5):
        log.record(f"s{i}", "v1", 0.5, 0.1)
    assert log.backlog == 2
    assert PREDICTIONS_UNLOGGED.labels("queue_full")._value.get() - before == 3
    shutdown_before = PREDICTIONS_UNLOGGED.labels("shutdown")._value.get()
    await log.start()
    await log.stop(flush_timeout=0.1)
    assert PREDICTIONS_UNLOGGED.labels("shutdown")._value.get() - shutdown_before == 2


async def test_prediction_log_records_a_batch_in_one_call() -> None:
    broker = NatsBroker("nats://127.0.0.1:1")  # never connected
    log = PredictionLog(broker, capacity=4, max_in_flight=10)
    before = PREDICTIONS_UNLOGGED.labels("queue_full")._value.get()
    log.record_many(["a", "b", "c"], ["v1", "v1", "v2"], [0.1, 0.2, 0.3], 0.5)
    assert log.backlog == 3
    log.record_many([f"s{i}" for i in range(3)], ["v1"] * 3, [0.5] * 3, 0.5)
    assert log.backlog == 4
    assert PREDICTIONS_UNLOGGED.labels("queue_full")._value.get() - before == 2
    shutdown_before = PREDICTIONS_UNLOGGED.labels("shutdown")._value.get()
    await log.start()
    await log.stop(flush_timeout=0.1)
    assert PREDICTIONS_UNLOGGED.labels("shutdown")._value.get() - shutdown_before == 4
