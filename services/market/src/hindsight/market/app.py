"""The composition root: builds the market service's parts from settings and wires them."""

from __future__ import annotations

import asyncio
from typing import Any

from faststream.nats import NatsBroker

from hindsight.common.broker import create_broker
from hindsight.common.db import DatabasePart
from hindsight.common.http import HttpServer, Readiness
from hindsight.common.logs import configure_logging
from hindsight.common.outbox import OutboxRelay
from hindsight.common.runtime import BrokerPart, Part, PartGroup, nats_ready, serve
from hindsight.market.config import MarketSettings
from hindsight.market.domain.labels import LabelSpec
from hindsight.market.http_api import create_app
from hindsight.market.ingest import BarIngest
from hindsight.market.labeler import BackLabeler
from hindsight.market.messaging import (
    make_publisher,
    register_consumers,
    register_window_responder,
)
from hindsight.market.service import ClusterRefresher, Market
from hindsight.market.storage import MIGRATIONS, OUTBOX, SCHEMA, Storage

__all__ = ["SERVICE", "MarketService", "build_settings", "main"]

SERVICE = "market"


def build_settings(**overrides: Any) -> MarketSettings:
    """Settings from the environment, keyword overrides first (tests)."""
    return MarketSettings(**overrides)


def label_spec(settings: MarketSettings) -> LabelSpec:
    """The label spec the settings ask for (the domain's defaults otherwise)."""
    return LabelSpec(
        horizon_bars=settings.label_horizon_bars,
        risk_horizon_bars=settings.label_risk_horizon_bars,
    )


class MarketService(PartGroup):
    """Every part of the market service, in start order."""

    def __init__(self, settings: MarketSettings) -> None:
        self.settings = settings
        self.broker: NatsBroker = create_broker(settings, client_name=SERVICE)
        self.storage = Storage(None)
        self.relay = OutboxRelay(
            OUTBOX,
            self.storage,
            make_publisher(self.broker),
            poll_s=settings.outbox_poll_s,
            name="market-outbox-relay",
        )
        self.labeler = BackLabeler(
            self.storage,
            self.relay,
            spec=label_spec(settings),
            sweep_every_s=settings.sweep_every_s,
        )
        self.clusters = ClusterRefresher(self.storage, every_s=settings.cluster_refresh_s)
        self.ingest = BarIngest(
            self.storage, calendars=settings.calendars, on_stored=self._bars_stored
        )
        self.market = Market(self.storage)
        register_consumers(
            self.broker,
            on_bars=self.ingest.on_bars,
            on_signals=self.labeler.on_signals,
            max_deliveries=settings.max_deliveries,
            bar_batch_size=settings.bar_batch_size,
            signal_batch_size=settings.signal_batch_size,
        )
        register_window_responder(
            self.broker,
            self.market.window,
            subject=settings.window_subject,
            max_n=settings.max_window_bars,
        )
        readiness = Readiness(SERVICE)
        readiness.register("database", self.storage.ping)
        readiness.register("nats", nats_ready(self.broker))
        self.http_app = create_app(
            market=self.market, readiness=readiness, max_window_bars=settings.max_window_bars
        )
        self.http = HttpServer(self.http_app, host=settings.http_host, port=settings.http_port)
        self.parts = [
            Part(
                "database",
                DatabasePart(settings, self.storage, schema=SCHEMA, migrations_dir=MIGRATIONS),
            ),
            Part("outbox", self.relay),
            Part("labeler", self.labeler),
            Part("clusters", self.clusters),
            Part("nats", BrokerPart(self.broker, settings)),
            Part("http", self.http),
        ]

    async def _bars_stored(self, series: set[tuple[str, str]]) -> None:
        await self.labeler.bars_arrived(series)
        self.clusters.notify()


def main() -> None:
    """Run the market service until SIGINT/SIGTERM."""
    settings = build_settings()
    configure_logging(SERVICE, settings.log_level)
    service = MarketService(settings)
    asyncio.run(serve(SERVICE, service.parts))
