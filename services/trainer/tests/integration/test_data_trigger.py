"""The data trigger against real PostgreSQL and a registry stand-in on a real HTTP port.

Issue 13: a threshold run fired on 319 outcomes (ingest batches), the registry refused its
version, the 69 that followed were below ``min_new_outcomes`` and learning stopped. Here
the clock is explicit (``now`` and the stored arrival times), so the test is exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from fastapi import FastAPI, HTTPException

from hindsight.common.db import create_pool
from hindsight.common.events import Event
from hindsight.common.http import HttpServer
from hindsight.devstack.ports import free_port
from hindsight.devstack.synthetic import generate
from hindsight.trainer.app import build_settings
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.ingest import Ingestor
from hindsight.trainer.production import RegistryProduction
from hindsight.trainer.runs import RunService
from hindsight.trainer.storage import MIGRATIONS, Storage, TrainingRun

pytestmark = pytest.mark.integration
MODEL = "trade_success"
T0 = datetime(2030, 1, 1, tzinfo=UTC)  # the test's clock; nothing here reads the wall clock


@dataclass
class Registry:
    """What the stand-in registry answers: version → (stage, gates_passed)."""

    versions: dict[str, tuple[str, bool]] = field(default_factory=dict)
    up: bool = True


@dataclass
class Harness:
    runs: RunService
    storage: Storage
    pool: asyncpg.Pool
    registry: Registry
    ingestor: Ingestor
    published: list[Event]
    pairs: list[Any]
    fed: int = 0

    async def feed(self, n: int, *, at: datetime) -> None:
        """Ingest the next ``n`` signal/outcome pairs, arrived at ``at``."""
        chunk = self.pairs[self.fed : self.fed + n]
        await self.ingestor.on_signals([signal for signal, _ in chunk])
        await self.ingestor.on_outcomes([outcome for _, outcome in chunk])
        await self.pool.execute(
            "UPDATE outcomes SET received_at = $1 WHERE signal_id = ANY($2::text[])",
            at,
            [s.signal_id for s, _ in chunk],
        )
        self.fed += n

    async def due(self, at: datetime) -> TrainingRun | None:
        """``request_if_data_due`` at ``at``; a run it starts is dated ``at`` and awaited."""
        run = await self.runs.request_if_data_due(now=at)
        if run is None:
            return None
        await self.pool.execute("UPDATE runs SET created_at = $1 WHERE run_id = $2", at, run.run_id)
        await self.runs.wait_idle()
        return await self.runs.get(run.run_id)

    def judge(self, run: TrainingRun, *, accepted: bool) -> None:
        """The registry's verdict on the run's version."""
        stage = "production" if accepted else "candidate"
        assert run.version is not None
        self.registry.versions[run.version] = (stage, accepted)


def _settings(
    tmp_path: Path, database_url: str, registry_url: str, **extra: Any
) -> TrainerSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "artifact_root": tmp_path / "artifacts",
        "registry_url": registry_url,
        "schedule_enabled": False,
        "num_boost_round": 20,
        "early_stopping_rounds": 10,
        "cv_folds": 0,
        "bootstrap_resamples": 0,
        "min_rows": 200,
        "min_new_outcomes": 100,
        # What `hindsight up` sets for the first run.
        "auto_train_outcomes": 250,
        "auto_train_interval_s": 120,
        "auto_train_quiet_s": 30,
        **extra,
    }
    return build_settings(**values)


@pytest_asyncio.fixture
async def harness(fresh_database: str, tmp_path: Path) -> AsyncIterator[Harness]:
    registry = Registry()
    app = FastAPI()

    @app.get("/v1/models/{name}/versions")
    async def versions(name: str) -> list[dict[str, Any]]:
        if not registry.up:
            raise HTTPException(503, "down")
        if name != MODEL or not registry.versions:
            raise HTTPException(404, f"model {name} has no versions")
        return [
            {"model_name": name, "version": v, "stage": stage, "gates_passed": passed}
            for v, (stage, passed) in registry.versions.items()
        ]

    @app.get("/v1/deployments")
    async def deployments() -> list[dict[str, Any]]:
        return []

    server = HttpServer(app, host="127.0.0.1", port=free_port())
    await server.start()
    settings = _settings(tmp_path, fresh_database, f"http://127.0.0.1:{server.port}")
    settings.artifact_root.mkdir(parents=True)
    pool = await create_pool(fresh_database, schema="trainer", migrations_dir=MIGRATIONS)
    storage = Storage(pool)
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    runs = RunService(
        settings,
        storage,
        publish,
        RegistryProduction(settings.registry_url, settings.artifact_root),
    )
    try:
        yield Harness(
            runs=runs,
            storage=storage,
            pool=pool,
            registry=registry,
            ingestor=Ingestor(storage, settings),
            published=published,
            pairs=generate(700, seed=13, n_features=6),
        )
    finally:
        await runs.stop()
        await pool.close()
        await server.stop()


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_a_refused_threshold_run_then_a_small_burst_retrains_on_all_once_quiet(
    harness: Harness,
) -> None:
    h = harness
    # Ingest batches: the threshold (250) is first crossed with 319 outcomes in.
    await h.feed(200, at=s(0))
    assert await h.due(s(1)) is None  # 200 < 250, and not quiet
    await h.feed(119, at=s(2))
    first = await h.due(s(3))
    assert first is not None and first.status == "completed", first
    assert first.mode == "full" and first.dataset_size == 319
    assert "319 new outcomes since the last run" in first.reason
    h.judge(first, accepted=False)  # e.g. 48 test rows where the registry wants 50

    # A burst under min_new_outcomes (100) follows, in two batches.
    await h.feed(60, at=s(10))
    await h.feed(9, at=s(110))
    assert await h.due(s(20)) is None  # the interval (120 s) holds
    assert await h.due(s(130)) is None  # 20 s without an outcome: not quiet yet (30 s)
    second = await h.due(s(141))
    assert second is not None and second.status == "completed", second
    assert second.mode == "full" and second.dataset_size == 388  # all of them
    assert second.reason == (
        "388 new outcomes since the last accepted version (69 since the last run), "
        "then none for 30 s"
    )
    h.judge(second, accepted=True)

    # Accepted: counting starts again from it, and nothing new means nothing due.
    assert await h.due(s(400)) is None
    await h.feed(50, at=s(410))
    assert await h.due(s(500)) is None  # quiet, but 50 < min_new_outcomes since accepted
    await h.feed(60, at=s(510))
    third = await h.due(s(600))
    assert third is not None and third.status == "completed", third
    assert third.mode == "incremental" and third.dataset_size == 498
    assert third.reason.startswith("110 new outcomes since the last accepted version")
    assert [e.status for e in h.published] == ["completed"] * 3  # type: ignore[attr-defined]


async def test_a_refused_run_is_not_repeated_on_the_same_data(harness: Harness) -> None:
    """Nothing new since a refused run: no retrain, however long; one outcome then quiet:
    a retrain on all. An incremental request skips and runs by the same counts."""
    h = harness
    await h.feed(300, at=s(0))
    first = await h.due(s(1))
    assert first is not None and first.status == "completed", first
    h.judge(first, accepted=False)
    assert await h.due(s(10_000)) is None
    skipped = await h.runs.request(mode="incremental", trigger="api")
    assert skipped.status == "skipped"
    assert skipped.error == "no new outcome since the last run: it would train on the same data"

    await h.feed(1, at=s(10_100))
    retrain = await h.due(s(10_200))
    assert retrain is not None and retrain.dataset_size == 301, retrain
    h.judge(retrain, accepted=True)
    await h.feed(5, at=s(10_300))
    skipped = await h.runs.request(mode="incremental", trigger="api")
    assert skipped.error == ("only 5 new outcomes since the last accepted version (min 100)"), (
        skipped
    )


async def test_without_an_answer_from_the_registry_the_last_completed_run_counts(
    harness: Harness,
) -> None:
    """The registry cannot be asked: the newest completed run is the reference (the rule
    before issue 13), and the reasons say so."""
    h = harness
    await h.feed(300, at=s(0))
    first = await h.due(s(1))
    assert first is not None and first.status == "completed", first
    h.registry.up = False
    await h.feed(69, at=s(10))
    assert await h.due(s(500)) is None  # 69 < min_new_outcomes since the completed run
    await h.feed(40, at=s(510))
    run = await h.due(s(600))
    assert run is not None and run.mode == "incremental", run
    assert run.reason.startswith("109 new outcomes since the last completed run"), run
