"""pytest fixtures giving tests a REAL NATS JetStream and a REAL PostgreSQL.

Enable with ``pytest_plugins = ["hindsight.devstack.pytest_plugin"]`` (the root conftest
does). Each server is chosen once per session, and only when a test asks for it:

1. ``HINDSIGHT_NATS_URL`` / ``HINDSIGHT_DATABASE_URL`` when set (CI, a running stack);
2. else testcontainers (``nats:2 -js``, ``postgres:16``) when a Docker engine answers;
3. else local child processes started by :mod:`hindsight.devstack.servers` (exactly as
   ``hindsight up`` starts them) on free ports in a temporary directory.

Fixtures: ``nats_url``, ``database_url`` (session), ``fresh_database`` (a brand-new empty
database per test), ``nats_client`` (a connected nats-py client per test),
``hindsight_test_dir`` (the session's scratch directory for local servers).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError as StreamNotFoundError

from hindsight.common.broker import DLQ_STREAM, STREAM

from .aio import run_sync
from .ports import free_port
from .servers import NatsServer, PostgresServer, start_server

__all__ = [
    "delete_hindsight_streams",
    "jetstream_reset",
    "database_url",
    "docker_available",
    "fresh_database",
    "hindsight_test_dir",
    "nats_client",
    "nats_url",
    "with_database",
]

NATS_IMAGE = "nats:2"
POSTGRES_IMAGE = "postgres:16"


@functools.cache
def docker_available() -> bool:
    """True when a Docker engine answers (about 0.2 s to find out when none does)."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no client library, no socket, engine down: all mean "no"
        return False


def with_database(dsn: str, name: str) -> str:
    """The same DSN pointing at database ``name``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def hindsight_test_dir() -> Iterator[Path]:
    """A scratch directory the ``postgres`` OS user can traverse (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hindsight-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a NATS server with JetStream, for the whole session."""
    configured = os.environ.get("HINDSIGHT_NATS_URL")
    if configured:
        yield configured
        return
    if docker_available():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = DockerContainer(NATS_IMAGE).with_command("-js").with_exposed_ports(4222)
        with container:
            wait_for_logs(container, "Server is ready", timeout=60)
            host = container.get_container_host_ip()
            yield f"nats://{host}:{container.get_exposed_port(4222)}"
        return
    root: Path = request.getfixturevalue("hindsight_test_dir")
    server = NatsServer(
        store_dir=root / "nats",
        port=free_port(),
        monitor_port=free_port(),
        log_file=root / "logs" / "nats.log",
        server_name="hindsight-test",
        port_env=None,
        monitor_port_env=None,
    )
    running = start_server(server)
    try:
        yield server.url
    finally:
        running.stop()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a PostgreSQL database for the whole session (the server's superuser)."""
    configured = os.environ.get("HINDSIGHT_DATABASE_URL")
    if configured:
        yield configured
        return
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer(
            POSTGRES_IMAGE, username="hindsight", password="hindsight", dbname="hindsight"
        ) as container:
            yield container.get_connection_url(driver=None)
        return
    root: Path = request.getfixturevalue("hindsight_test_dir")
    server = PostgresServer(
        data_dir=root / "postgres",
        port=free_port(),
        log_file=root / "logs" / "postgres.log",
        fsync=False,
        port_env=None,
    )
    running = start_server(server)
    try:
        yield server.url
    finally:
        running.stop()


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=10.0)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def fresh_database(database_url: str) -> Iterator[str]:
    """DSN of a brand-new empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    run_sync(_execute(database_url, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(database_url, name)
    finally:
        run_sync(_execute(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest_asyncio.fixture
async def nats_client(nats_url: str) -> AsyncIterator[NatsClient]:
    """A connected nats-py client (JetStream via ``nats_client.jetstream()``), closed after."""
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield client
    finally:
        await client.close()


async def delete_hindsight_streams(client: NatsClient) -> None:
    """Delete the Hindsight streams (disposable test servers only)."""
    js = client.jetstream()
    for name in (STREAM, DLQ_STREAM):
        try:
            await js.delete_stream(name)
        except StreamNotFoundError:
            pass


@pytest_asyncio.fixture
async def jetstream_reset(nats_client: NatsClient) -> None:
    """The test starts without the Hindsight streams."""
    await delete_hindsight_streams(nats_client)
