"""Composition root: settings -> database, broker, outbox relay, evaluator, HTTP server."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from hindsight.common.broker import create_broker
from hindsight.common.db import DatabasePart
from hindsight.common.http import HttpServer, Readiness, create_http_app
from hindsight.common.logs import configure_logging
from hindsight.common.outbox import OutboxRelay
from hindsight.common.runtime import BrokerPart, Part, nats_ready, serve
from hindsight.registry import experiment_results
from hindsight.registry.config import RegistrySettings
from hindsight.registry.degradation import DegradationMonitor
from hindsight.registry.evaluator import Evaluator
from hindsight.registry.experiments import ExperimentLimits, Experiments
from hindsight.registry.feature_schemas import FeatureSchemaCatalog
from hindsight.registry.http_api import build_router
from hindsight.registry.ingest import Ingest
from hindsight.registry.messaging import publisher, subscribe, subscribe_evaluation
from hindsight.registry.metrics import refresh_gauges
from hindsight.registry.promotion import Promotions
from hindsight.registry.service import Registry
from hindsight.registry.storage import MIGRATIONS_DIR, OUTBOX, SCHEMA, Store

__all__ = ["RegistryApp", "build_settings", "main", "run"]

SERVICE = "registry"


def build_settings(**overrides: Any) -> RegistrySettings:
    """Settings from the environment, with keyword overrides (tests)."""
    return RegistrySettings(**overrides)


class RegistryApp:
    """Every part of the registry, wired; ``start``/``stop`` or ``run`` until a signal."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self.store = Store()
        self.broker = create_broker(settings, client_name=SERVICE)
        self.relay = OutboxRelay(
            OUTBOX,
            self.store,
            publisher(self.broker),
            poll_s=settings.outbox_poll_s,
            name="registry-outbox-relay",
            after_pass=partial(refresh_gauges, self.store),
        )
        notify = self.relay.notify
        # A production change by any path voids the model's active experiment.
        self.promotions = Promotions(
            policy=settings.gate_policy(),
            on_production_change=experiment_results.cancel_active,
        )
        self.registry = Registry(
            self.store,
            self.promotions,
            artifact_root=settings.artifact_root,
            manual_approval=settings.manual_approval,
            notify=notify,
        )
        self.experiments = Experiments(
            self.store,
            self.promotions,
            auto_promote_default=settings.auto_promote_experiments,
            limits=ExperimentLimits(
                max_duration_s=settings.experiment_max_duration_s,
                max_samples_per_arm=settings.experiment_max_samples_per_arm,
            ),
            notify=notify,
        )
        self.monitor = DegradationMonitor(
            self.store,
            self.promotions,
            policy=settings.degradation_policy(),
            auto_rollback=settings.auto_rollback,
            notify=notify,
        )
        self.evaluator = Evaluator(
            self.experiments,
            self.monitor,
            every_s=settings.evaluate_every_s,
            debounce_s=settings.degradation_debounce_s,
        )
        subscribe(self.broker, self.registry, max_deliveries=settings.max_deliveries)
        subscribe_evaluation(
            self.broker,
            Ingest(self.store),
            max_deliveries=settings.max_deliveries,
            prediction_batch_size=settings.prediction_batch_size,
            prediction_batch_pause_s=settings.prediction_batch_pause_s,
            on_outcome=self.evaluator.outcome_arrived,
        )
        self.feature_schemas = FeatureSchemaCatalog(self.store)
        readiness = Readiness(SERVICE)
        readiness.register("database", self.store.ping)
        readiness.register("nats", nats_ready(self.broker))
        self.http_app = create_http_app(service=SERVICE, readiness=readiness)
        self.http_app.include_router(
            build_router(
                self.registry,
                self.experiments,
                self.monitor,
                self.feature_schemas,
                admin_token=settings.admin_token,
            )
        )
        self.http = HttpServer(self.http_app, host=settings.http_host, port=settings.http_port)
        database = DatabasePart(settings, self.store, schema=SCHEMA, migrations_dir=MIGRATIONS_DIR)
        self.parts = [
            Part("database", database),
            Part("nats", BrokerPart(self.broker, settings)),
            Part("outbox", self.relay),
            Part("evaluator", self.evaluator),
            Part("http", self.http),
        ]
        self._started: list[Part] = []

    async def start(self) -> None:
        """Start the parts in order (tests; ``run`` is the process entry)."""
        for part in self.parts:
            await part.component.start()
            self._started.append(part)

    async def stop(self) -> None:
        """Stop what was started, in reverse."""
        while self._started:
            await self._started.pop().component.stop()

    async def run(self, stop_event: asyncio.Event | None = None) -> None:
        """Serve until SIGINT/SIGTERM (or ``stop_event``)."""
        await serve(SERVICE, self.parts, stop_event=stop_event)


def run(settings: RegistrySettings | None = None) -> None:
    """Process entry: JSON logs, then serve."""
    settings = settings or build_settings()
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(RegistryApp(settings).run())


main = run
