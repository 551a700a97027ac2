"""A model family's data trigger against real PostgreSQL: nobody asks, enough Back-Labeler
labels do (a threshold), then a quiet flow with untrained labels; nothing new, no run.

The clock is explicit (``now`` and the stored arrival times), as in ``test_data_trigger``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from hindsight.common.db import create_pool
from hindsight.common.events import SignalFeatures, SignalLabeled
from hindsight.common.family import DEFAULT_FAMILY
from hindsight.trainer.app import build_settings
from hindsight.trainer.domain.quality import QualityConfig
from hindsight.trainer.domain.synthetic import make_family_frame
from hindsight.trainer.family_runs import FamilyRuns
from hindsight.trainer.family_storage import FamilyStorage
from hindsight.trainer.family_trigger import FamilyDataTrigger
from hindsight.trainer.ingest import Ingestor
from hindsight.trainer.labels_ingest import LabelsIngestor
from hindsight.trainer.production import RegistryProduction
from hindsight.trainer.runs import RunService, training_params
from hindsight.trainer.storage import MIGRATIONS, Storage, TrainingRun

pytestmark = pytest.mark.integration

T0 = datetime(2020, 1, 1, tzinfo=UTC)  # before the wall clock: a label revised now is newer
SPEC = "3333333333333333"


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _events(n: int) -> list[tuple[SignalFeatures, SignalLabeled]]:
    frame = make_family_frame(n, clusters_differ=True, seed=11)
    features = [c for c in frame if c.startswith("f")]
    pairs = []
    for i in range(n):
        ts = datetime.fromtimestamp(frame["ts"][i].astype("int64") / 1e6, tz=UTC)
        signal_id = str(frame["signal_id"][i])
        signal = SignalFeatures.create(
            source="test",
            occurred_at=ts,
            signal_id=signal_id,
            symbol=str(frame["symbol"][i]),
            timeframe="5m",
            side=str(frame["side"][i]),
            ts=ts,
            features={f: round(float(frame[f][i]), 6) for f in features},
            feature_schema_version=1,
            entry_price=100.0,
        )
        label = SignalLabeled.create(
            source="market",
            signal_id=signal_id,
            label_spec=SPEC,
            horizon_bars=12,
            runup_r=float(frame["rr_target"][i]),
            drawdown_r=-0.5,
            realised_r=float(frame["realised_r"][i]),
            y_entry=int(frame["y_entry"][i]),
            dd_katr=float(frame["sl_katr"][i]),
            best_offset_katr=float(frame["offset_katr"][i]),
            liquidity_cluster=str(frame["liquidity_cluster"][i]),
        )
        pairs.append((signal, label))
    return pairs


@dataclass
class Harness:
    trigger: FamilyDataTrigger
    runs: RunService
    pool: asyncpg.Pool
    signals: Ingestor
    labels: LabelsIngestor
    pairs: list[tuple[SignalFeatures, SignalLabeled]]
    fed: int = 0

    async def feed(self, n: int, *, at: datetime) -> None:
        """Ingest the next ``n`` signals and their labels, arrived at ``at``."""
        chunk = self.pairs[self.fed : self.fed + n]
        ids = [signal.signal_id for signal, _ in chunk]
        await self.signals.on_signals([signal for signal, _ in chunk])
        await self.labels.on_labels([label for _, label in chunk])
        await self.pool.execute(
            "UPDATE signals SET received_at = $1 WHERE signal_id = ANY($2::text[])", at, ids
        )
        await self.pool.execute(
            "UPDATE signal_labels SET received_at = $1, updated_at = $1 "
            "WHERE signal_id = ANY($2::text[])",
            at,
            ids,
        )
        self.fed += n

    async def due(self, at: datetime) -> TrainingRun | None:
        """The trigger at ``at``; a run it starts is dated ``at`` and awaited."""
        run = await self.trigger.request_if_due(DEFAULT_FAMILY, now=at)
        if run is None:
            return None
        await self.pool.execute("UPDATE runs SET created_at = $1 WHERE run_id = $2", at, run.run_id)
        await self.runs.wait_idle()
        return await self.runs.get(run.run_id)


@pytest_asyncio.fixture
async def harness(fresh_database: str, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = build_settings(
        database_url=fresh_database,
        artifact_root=tmp_path / "artifacts",
        registry_url="",  # none: the newest completed run counts as accepted
        schedule_enabled=False,
        num_boost_round=15,
        early_stopping_rounds=5,
        cv_folds=0,
        bootstrap_resamples=0,
        min_rows=200,
        min_new_outcomes=100,
        family_auto_train_labels=500,
        auto_train_interval_s=120,
        auto_train_quiet_s=30,
    )
    settings.artifact_root.mkdir(parents=True)
    pool = await create_pool(fresh_database, schema="trainer", migrations_dir=MIGRATIONS)
    storage = Storage(pool)
    family_storage = FamilyStorage(storage)

    async def publish(event: object) -> None:
        return None

    runs = RunService(
        settings,
        storage,
        publish,
        RegistryProduction(settings.registry_url, settings.artifact_root),
        families=FamilyRuns(
            family_storage,
            families=settings.family_specs(),
            artifact_root=settings.artifact_root,
            params=training_params(settings),
            quality=QualityConfig(max_missing_share=0.3, min_rows=settings.min_rows),
        ),
    )
    try:
        yield Harness(
            trigger=FamilyDataTrigger(runs, family_storage),
            runs=runs,
            pool=pool,
            signals=Ingestor(storage, settings),
            labels=LabelsIngestor(family_storage),
            pairs=_events(900),
        )
    finally:
        await runs.stop()
        await pool.close()


async def test_labels_train_the_family_by_threshold_then_once_quiet(harness: Harness) -> None:
    assert harness.trigger.enabled and harness.trigger.families() == [DEFAULT_FAMILY]
    await harness.feed(400, at=s(0))
    assert await harness.due(s(10)) is None  # 400 < 500, and the flow is not quiet yet
    await harness.feed(200, at=s(20))
    first = await harness.due(s(25))
    assert first is not None and first.trigger == "data" and first.mode == "full", first
    assert first.status == "completed", first.error
    assert first.reason is not None and "600 new labels since the last run" in first.reason
    assert first.version == "v1_0_0"

    # A few more labels: not a threshold, not quiet yet, then quiet: an incremental run.
    await harness.feed(150, at=s(300))
    assert await harness.due(s(310)) is None
    second = await harness.due(s(340))
    assert second is not None and second.mode == "incremental", second
    assert second.status == "completed", second.error
    assert second.reason is not None and "150 new labels" in second.reason
    assert "then none for 30 s" in second.reason

    # Nothing new: whatever the clock says, no run (it would train on the same labels).
    assert await harness.due(s(2000)) is None
    # A revised label counts again (the Back-Labeler's higher revision).
    signal, label = harness.pairs[0]
    revised = label.model_copy(update={"label_revision": 1, "y_entry": 1 - label.y_entry})
    await harness.labels.on_labels([revised])
    assert harness.runs.families is not None
    state = await harness.trigger.state(harness.runs.families.families[DEFAULT_FAMILY])
    assert state.fresh == 1 and state.has_accepted, (signal.signal_id, state)


async def test_an_unknown_family_is_named(harness: Harness) -> None:
    with pytest.raises(ValueError, match="family: 'nope'"):
        await harness.trigger.request_if_due("nope", now=s(0))
