"""The composition root: builds the memory service's parts from settings and wires them."""

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
from hindsight.memory.backup import BackupService
from hindsight.memory.chroma_store import VectorStore
from hindsight.memory.config import MemorySettings
from hindsight.memory.documents import DocumentIngestor
from hindsight.memory.embed_client import NatsQueryEmbedder, QueryEmbedder
from hindsight.memory.http_api import create_app
from hindsight.memory.ingest import Ingestor
from hindsight.memory.messaging import register_consumers
from hindsight.memory.retention import Retention, RetentionTask
from hindsight.memory.search import Searcher
from hindsight.memory.similarity import PatternStore, SimilarityQuery
from hindsight.memory.similarity.extension import PgvectorCheck
from hindsight.memory.storage import MIGRATIONS, Storage

__all__ = ["Memory", "build_memory", "build_settings", "main"]

SERVICE = "memory"


def build_settings(**overrides: Any) -> MemorySettings:
    """Settings from the environment, keyword overrides first (tests)."""
    return MemorySettings(**overrides)


class _Gauge:
    """Sets the records gauge once both stores are up."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor

    async def start(self) -> None:
        await self.ingestor.refresh_gauge()

    async def stop(self) -> None:
        return None


class Memory(PartGroup):
    """Every part of the memory service, in start order."""

    def __init__(self, settings: MemorySettings, *, embedder: QueryEmbedder | None = None) -> None:
        self.settings = settings
        self.broker: NatsBroker = create_broker(settings, client_name=SERVICE)
        self.storage = Storage(None)
        self.vectors = VectorStore(settings)
        self.ingestor = Ingestor(self.storage, self.vectors)
        self.embedder: QueryEmbedder = embedder or NatsQueryEmbedder(
            self.broker, timeout=settings.embed_timeout_s
        )
        self.searcher = Searcher(settings, self.storage, self.vectors, self.embedder)
        self.documents = DocumentIngestor(settings, self.storage, self.ingestor, self.embedder)
        self.retention = Retention(settings, self.storage, self.vectors, self.ingestor)
        self.backups = BackupService(self.storage, self.vectors, self.ingestor)
        self.patterns = PatternStore(self.storage)
        self.nearest = SimilarityQuery(self.storage)
        register_consumers(
            self.broker,
            self.ingestor,
            max_deliveries=settings.max_deliveries,
            batch_size=settings.consumer_batch_size,
        )
        readiness = Readiness(SERVICE)
        readiness.register("database", self.storage.ping)
        readiness.register("chroma", self.vectors.ping)
        readiness.register("nats", nats_ready(self.broker))
        self.http_app: FastAPI = create_app(
            settings,
            storage=self.storage,
            searcher=self.searcher,
            documents=self.documents,
            retention=self.retention,
            backups=self.backups,
            readiness=readiness,
            patterns=self.patterns,
            nearest=self.nearest,
        )
        self.http = HttpServer(self.http_app, host=settings.http_host, port=settings.http_port)
        self.parts = [
            Part("pgvector", PgvectorCheck(settings)),
            Part(
                "database",
                DatabasePart(settings, self.storage, schema=SERVICE, migrations_dir=MIGRATIONS),
            ),
            Part("chroma", self.vectors),
            Part("gauge", _Gauge(self.ingestor)),
            Part("nats", BrokerPart(self.broker, settings)),
            Part("http", self.http),
            Part("retention", RetentionTask(self.retention)),
        ]


def build_memory(settings: MemorySettings, *, embedder: QueryEmbedder | None = None) -> Memory:
    """The memory service, built but not started."""
    return Memory(settings, embedder=embedder)


def main() -> None:
    """Run the memory service until SIGINT/SIGTERM."""
    settings = build_settings()
    configure_logging(SERVICE, settings.log_level)
    asyncio.run(serve(SERVICE, build_memory(settings).parts))
