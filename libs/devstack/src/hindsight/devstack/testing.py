"""Helpers for tests that run Hindsight services as real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .ports import free_port
from .process import ChildSpec, start_child, stop_child
from .pytest_plugin import with_database
from .supervisor import wiring_env

__all__ = ["PLATFORM", "ServiceProcesses", "create_database", "get_json", "wait_until"]

# The services of the learning loop and the ports each listens on.
PLATFORM: dict[str, tuple[str, ...]] = {
    "registry": ("http",),
    "trainer": ("http",),
    "scorer": ("http", "grpc"),
    "gateway": ("http", "grpc"),
    "embedder": ("http",),
    "memory": ("http",),
    "labeling": ("http",),
    "market": ("http",),
}


async def create_database(server_dsn: str, name: str) -> str:
    """A new empty database ``name`` on the server (dropped first if it exists); its DSN."""
    import asyncpg

    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_dsn, name)


def get_json(url: str) -> Any:
    """The JSON body of a 200 answer, else None (connection errors included)."""
    try:
        response = httpx.get(url, timeout=5.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


@dataclass
class ServiceProcesses:
    """Services started as ``python -m hindsight.<name>`` with one environment.

    ``ports`` maps ``<service>_http`` (and ``<service>_grpc``) to the ports the
    environment gives them; a service counts as started once ``ready_path`` answers 200.
    """

    env: dict[str, str]
    logs: Path
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @classmethod
    def platform(
        cls,
        root: Path,
        *,
        nats_url: str,
        database_url: str,
        admin_token: str,
        extra_env: dict[str, str] | None = None,
    ) -> ServiceProcesses:
        """Every service (learning loop, embedder, memory, labeling, market) wired together on
        free ports.

        Nothing is started; ``extra_env`` tunes them (``HINDSIGHT_<SERVICE>_...``).
        """
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        (root / "logs").mkdir(parents=True, exist_ok=True)
        (root / "images").mkdir(parents=True, exist_ok=True)
        ports = {f"{svc}_{kind}": free_port() for svc, kinds in PLATFORM.items() for kind in kinds}
        env = {k: v for k, v in os.environ.items() if not k.startswith("HINDSIGHT_")}
        env |= {f"HINDSIGHT_{name.upper()}_PORT": str(port) for name, port in ports.items()}
        env |= {
            "HINDSIGHT_NATS_URL": nats_url,
            "HINDSIGHT_DATABASE_URL": database_url,
            "HINDSIGHT_ARTIFACT_ROOT": str(root / "artifacts"),
            "HINDSIGHT_DATA_DIR": str(root),
            "HINDSIGHT_ADMIN_TOKEN": admin_token,
            "HINDSIGHT_TRAINER_SCHEDULE_ENABLED": "false",
            **wiring_env(env),
            "HINDSIGHT_IMAGE_ROOTS": str(root / "images"),
            # No pretrained CLIP weights can be fetched offline; vectors say so in metadata.
            "HINDSIGHT_EMBEDDER_ALLOW_RANDOM_WEIGHTS": "true",
            **(extra_env or {}),
        }
        return cls(env=env, logs=root / "logs", ports=ports)

    @classmethod
    async def fresh_platform(
        cls,
        root: Path,
        *,
        nats_url: str,
        database_url: str,
        database: str,
        admin_token: str,
        extra_env: dict[str, str] | None = None,
    ) -> ServiceProcesses:
        """:meth:`platform` on a clean slate: Hindsight's streams deleted, a new empty
        database ``database`` on the server."""
        import nats

        from .pytest_plugin import delete_hindsight_streams

        client = await nats.connect(nats_url)
        try:
            await delete_hindsight_streams(client)
        finally:
            await client.close()
        return cls.platform(
            root,
            nats_url=nats_url,
            database_url=await create_database(database_url, database),
            admin_token=admin_token,
            extra_env=extra_env,
        )

    def url(self, service: str) -> str:
        """Base URL of the service's HTTP port."""
        return f"http://127.0.0.1:{self.ports[service + '_http']}"

    def start(
        self,
        service: str,
        *,
        ready_path: str = "/healthz",
        timeout: float = 60.0,
        extra_env: dict[str, str] | None = None,
        nice: int = 0,
    ) -> None:
        """Start one service (``extra_env`` on top of ``env``), wait for ``ready_path``;
        ``nice`` > 0 runs it at a lower CPU priority (as the dev stack runs the learning side)."""
        probe = f"{self.url(service)}{ready_path}"
        spec = ChildSpec(
            name=service,
            argv=[sys.executable, "-m", f"hindsight.{service}"],
            nice=nice,
            env={**self.env, **(extra_env or {})},
            log_file=self.logs / f"{service}.log",
            ready=lambda: get_json(probe) is not None,
            ready_timeout=timeout,
        )
        self.procs[service] = start_child(spec)

    def stop(self, service: str, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop one service (SIGKILL to simulate a crash)."""
        stop_child(self.procs.pop(service), name=service, sig=sig, timeout=timeout)

    def stop_all(self) -> None:
        """Stop every service still running, last started first."""
        for service in reversed(list(self.procs)):
            self.stop(service)

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every service log, for a failure message."""
        text = ""
        for path in sorted(self.logs.glob("*.log")):
            text += f"\n--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-lines:])
        return text


async def wait_until(
    what: str,
    probe: Callable[[], Any],
    *,
    timeout: float,
    services: ServiceProcesses | None = None,
    interval: float = 0.5,
) -> Any:
    """Poll ``probe`` (a coroutine function, or a plain one run in a thread) until it returns
    something truthy, which is returned.

    On timeout the assertion message carries the services' log tails.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.iscoroutinefunction(probe):
            result = await probe()
        else:
            result = await asyncio.to_thread(probe)
        if result:
            return result
        await asyncio.sleep(interval)
    tails = services.log_tails() if services is not None else ""
    raise AssertionError(f"timed out waiting for {what}{tails}")
