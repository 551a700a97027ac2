"""The composition root: builds the trainer's parts from settings and wires them."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from faststream.nats import NatsBroker

from hindsight.common.broker import create_broker
from hindsight.common.db import DatabasePart
from hindsight.common.http import HttpServer, Readiness
from hindsight.common.logs import configure_logging
from hindsight.common.runtime import BrokerPart, Part, PartGroup, nats_ready, serve
from hindsight.trainer.config import TrainerSettings
from hindsight.trainer.dask_fitting import fitter_for
from hindsight.trainer.data_specs import DataSpecCatalog
from hindsight.trainer.domain.quality import QualityConfig
from hindsight.trainer.domain.schedule import Schedule
from hindsight.trainer.drift import FeatureDrift, RegistryReferences
from hindsight.trainer.family_production import FamilyProduction
from hindsight.trainer.family_runs import FamilyRuns
from hindsight.trainer.family_storage import FamilyStorage
from hindsight.trainer.family_trigger import FamilyDataTrigger
from hindsight.trainer.http_api import create_app
from hindsight.trainer.ingest import Ingestor
from hindsight.trainer.labels_ingest import LabelsIngestor
from hindsight.trainer.messaging import make_publisher, register_consumers
from hindsight.trainer.production import RegistryProduction
from hindsight.trainer.runs import RunService, training_params
from hindsight.trainer.scheduler import Scheduler
from hindsight.trainer.schemas import RegistrySchemas
from hindsight.trainer.storage import MIGRATIONS, Storage

__all__ = ["Trainer", "build_settings", "build_trainer", "main"]

SERVICE = "trainer"


def build_settings(**overrides: Any) -> TrainerSettings:
    """Settings from the environment, keyword overrides first (tests)."""
    return TrainerSettings(**overrides)


class _Runs:
    """Recovers interrupted runs at start; lets a run in flight finish at stop."""

    def __init__(self, runs: RunService) -> None:
        self.runs = runs

    async def start(self) -> None:
        await self.runs.recover()

    async def stop(self) -> None:
        await self.runs.stop()


class Trainer(PartGroup):
    """Every part of the trainer, in start order."""

    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.broker: NatsBroker = create_broker(settings, client_name=SERVICE)
        self.storage = Storage(None)
        self.family_storage = FamilyStorage(self.storage)
        self.data_specs = DataSpecCatalog(settings.specs(), self.storage)
        self.fitter = fitter_for(settings.dask_scheduler)
        self.runs = RunService(
            settings,
            self.storage,
            make_publisher(self.broker),
            RegistryProduction(settings.registry_url, settings.artifact_root),
            families=FamilyRuns(
                self.family_storage,
                families=settings.family_specs(),
                artifact_root=settings.artifact_root,
                params=training_params(settings),
                fitter=self.fitter,
                production=FamilyProduction(settings.registry_url, settings.artifact_root),
                quality=QualityConfig(
                    max_missing_share=settings.max_missing_share, min_rows=settings.min_rows
                ),
            ),
            specs=self.data_specs,
            fitter=self.fitter,
        )
        self.drift = FeatureDrift(
            RegistryReferences(settings.registry_url, settings.artifact_root),
            model_name=settings.model_name,
            window=settings.drift_window,
            min_rows=settings.drift_min_rows,
            psi_threshold=settings.drift_psi_threshold,
            refresh_s=settings.drift_refresh_s,
            export_s=settings.drift_export_s,
        )
        self.schemas = (
            RegistrySchemas(
                settings.registry_url,
                unknown_ttl_s=settings.schema_unknown_ttl_s,
                retry_s=settings.schema_retry_s,
            )
            if settings.registry_url and settings.schema_check_enabled
            else None
        )
        self.ingestor = Ingestor(
            self.storage,
            settings,
            observe=self.drift.observe if settings.drift_enabled else None,
            schemas=self.schemas,
        )
        register_consumers(
            self.broker,
            self.ingestor,
            self.runs,
            max_deliveries=settings.max_deliveries,
            batch_size=settings.ingest_batch_size,
            labels=LabelsIngestor(self.family_storage),
        )
        readiness = Readiness(SERVICE)
        readiness.register("database", self.storage.ping)
        readiness.register("nats", nats_ready(self.broker))
        self.http_app: FastAPI = create_app(
            settings, self.runs, self.storage, readiness, data_specs=self.data_specs
        )
        self.http = HttpServer(self.http_app, host=settings.http_host, port=settings.http_port)
        self.scheduler = Scheduler(
            self.runs,
            Schedule(
                settings.daily_incremental_at, settings.weekly_full_at, settings.weekly_full_weekday
            ),
            enabled=settings.schedule_enabled,
            families=FamilyDataTrigger(self.runs, self.family_storage),
        )
        self.parts = [
            Part(
                "database",
                DatabasePart(settings, self.storage, schema=SERVICE, migrations_dir=MIGRATIONS),
            ),
            Part("data-specs", self.data_specs),
            Part("nats", BrokerPart(self.broker, settings)),
            Part("runs", _Runs(self.runs)),
            Part("http", self.http),
            Part("schedule", self.scheduler),
        ]
        if settings.drift_enabled:
            self.parts.append(Part("drift", self.drift))


def build_trainer(settings: TrainerSettings) -> Trainer:
    """The trainer, built but not started."""
    settings.artifact_root.mkdir(parents=True, exist_ok=True)
    return Trainer(settings)


def main() -> None:
    """Run the trainer until SIGINT/SIGTERM."""
    settings = build_settings()
    configure_logging(SERVICE, settings.log_level)
    trainer = build_trainer(settings)
    asyncio.run(serve(SERVICE, trainer.parts))
