"""``hindsight up``: NATS + PostgreSQL (unless configured) + every service, supervised."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from hindsight.common.cli import resolve_data_dir, token_path
from hindsight.common.errors import ConfigurationError
from hindsight.common.settings import BaseServiceSettings
from hindsight.ops.output import format_table, mask_url

from .live import LiveStatus
from .logs import configure_supervisor_logging
from .process import ChildSpec, ChildStartError, process_start_time
from .servers import (
    DEFAULT_NATS_MONITOR_PORT,
    DEFAULT_NATS_PORT,
    DEFAULT_PG_PORT,
    NatsServer,
    PostgresServer,
)
from .state import (
    ChildRecord,
    StackState,
    StackStatus,
    clean_stale,
    inspect_stack,
    lock_data_dir,
    remove_state,
    state_path,
    this_process,
    write_state,
)
from .supervisor import (
    Service,
    Supervisor,
    describe_exit,
    discover_services,
    learning_nice,
    service_env,
    service_spec,
)
from .tokens import labeler_password, labeler_password_path

__all__ = ["StackConfig", "add_up_arguments", "run_up"]

READY_LINE = "Hindsight is up. Ctrl-C to stop."
DEV_LABELER = "trader"


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigurationError(f"{name} must be a port number (1-65535), got {raw!r}")
    return int(raw)


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """What ``up`` needs, read from the environment."""

    data_dir: Path
    nats_url: str | None
    """External NATS; None: start our own."""
    database_url: str | None
    """External PostgreSQL; None: start our own."""
    nats_port: int = DEFAULT_NATS_PORT
    nats_monitor_port: int = DEFAULT_NATS_MONITOR_PORT
    pg_port: int = DEFAULT_PG_PORT

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @classmethod
    def from_env(
        cls, *, data_dir: str | None = None, environ: Mapping[str, str] | None = None
    ) -> StackConfig:
        env = os.environ if environ is None else environ
        try:
            # The same validation every service applies to the shared variables.
            settings = BaseServiceSettings.model_validate(
                {k: v for k, v in env.items() if k.startswith("HINDSIGHT_")}
            )
        except ValidationError as exc:
            raise ConfigurationError(f"invalid HINDSIGHT_* environment:\n{exc}") from exc
        return cls(
            data_dir=resolve_data_dir(data_dir, env),
            nats_url=settings.nats_url,
            database_url=settings.database_dsn(),
            nats_port=_port(env, "HINDSIGHT_DEV_NATS_PORT", DEFAULT_NATS_PORT),
            nats_monitor_port=_port(
                env, "HINDSIGHT_DEV_NATS_MONITOR_PORT", DEFAULT_NATS_MONITOR_PORT
            ),
            pg_port=_port(env, "HINDSIGHT_DEV_PG_PORT", DEFAULT_PG_PORT),
        )


def add_up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-replay",
        action="store_true",
        help="do not start the market replay feeder (also: HINDSIGHT_REPLAY=off)",
    )


def replay_enabled(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> bool:
    """The replay feeder runs unless ``--no-replay`` or ``HINDSIGHT_REPLAY=off|0|false``."""
    env = os.environ if environ is None else environ
    if getattr(args, "no_replay", False):
        return False
    return env.get("HINDSIGHT_REPLAY", "on").strip().lower() not in {"off", "0", "false", "no"}


class _Stack:
    """One run of ``up``: owns the supervisor, the state file and the output."""

    def __init__(self, config: StackConfig, *, replay: bool = False) -> None:
        self.config = config
        self.replay = replay
        self.env: dict[str, str] = {}
        self.stop_event = threading.Event()
        self.supervisor = Supervisor(stop_event=self.stop_event, on_change=self._save)
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.services: list[Service] = []
        self._state_ready = False

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame  # printing here could re-enter a print of the main thread
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._request_stop)

    def _save(self) -> None:
        if not self._state_ready:
            return
        children: list[ChildRecord] = [
            {
                "name": child.name,
                "pid": child.pid,
                "start_time": process_start_time(child.pid) if child.pid else None,
                "health_url": child.spec.health_url,
                "tcp": list(child.spec.tcp) if child.spec.tcp else None,
                "log_file": str(child.spec.log_file) if child.spec.log_file else None,
                "restarts": child.restarts,
                "finished": child.finished,
            }
            for child in self.supervisor.children
        ]
        state: StackState = {
            "version": 1,
            "supervisor": this_process(),
            "data_dir": str(self.config.data_dir),
            "log_dir": str(self.config.log_dir),
            "started_at": self.started_at,
            "endpoints": self.endpoints,
            "children": children,
        }
        write_state(state_path(self.config.data_dir), state)

    def start(self) -> None:
        """Check and prepare everything first, then start NATS, PostgreSQL, the services."""
        config = self.config
        self._state_ready = True
        nats: NatsServer | None = None
        postgres: PostgresServer | None = None
        if config.nats_url is None:
            nats = NatsServer(
                store_dir=config.data_dir / "nats",
                port=config.nats_port,
                monitor_port=config.nats_monitor_port,
                log_file=config.log_dir / "nats.log",
            )
            nats.prepare()
            nats_url = nats.url
            self.endpoints["nats"] = {"url": nats.url, "monitor_url": nats.monitor_url}
        else:
            nats_url = config.nats_url
            self.endpoints["nats"] = {"url": nats_url, "monitor_url": None}
        self.endpoints["nats"]["managed"] = nats is not None
        if config.database_url is None:
            postgres = PostgresServer(
                data_dir=config.data_dir / "postgres",
                port=config.pg_port,
                log_file=config.log_dir / "postgres.log",
            )
            postgres.prepare()
            if postgres.initialized:
                print(f"Initialised a new PostgreSQL cluster in {postgres.data_dir}", flush=True)
            database_url = postgres.url
            self.endpoints["postgres"] = {"url": postgres.url, "managed": True}
        else:
            database_url = config.database_url
            self.endpoints["postgres"] = {"url": mask_url(database_url), "managed": False}
        env = service_env(nats_url=nats_url, database_url=database_url, data_dir=config.data_dir)
        self.env = env
        Path(env["HINDSIGHT_ARTIFACT_ROOT"]).mkdir(parents=True, exist_ok=True)
        for root in env["HINDSIGHT_IMAGE_ROOTS"].split(":"):
            Path(root).mkdir(parents=True, exist_ok=True)
        self.services = discover_services()
        self.endpoints["services"] = {svc.name: dict(svc.ports) for svc in self.services}
        specs = [server.spec() for server in (nats, postgres) if server is not None]
        specs += [service_spec(svc, env=env, log_dir=config.log_dir) for svc in self.services]
        for spec in specs:
            self._check_stop()
            self.supervisor.start(spec)
        if any(svc.name == "labeling" for svc in self.services):
            self._ensure_labeler(env)
        if any(svc.name == "market" for svc in self.services):
            for dataset in BAR_DATASETS:
                self._check_stop()
                self.supervisor.start(bars_import_spec(dataset, env=env, log_dir=config.log_dir))
        if self.replay:
            self._check_stop()
            self.supervisor.start(replay_spec(env=env, log_dir=config.log_dir))
        self._save()

    def _ensure_labeler(self, env: Mapping[str, str]) -> None:
        """The dev labeler account ``trader`` with the data dir's password (idempotent)."""
        password = labeler_password(self.config.data_dir)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "hindsight.devstack",
                "labelers",
                "add",
                DEV_LABELER,
                "--password-stdin",
            ],
            input=password + "\n",
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            print(f"warning: could not create the labeler account: {result.stderr.strip()}")

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise ChildStartError("start-up interrupted")

    def print_endpoints(self) -> None:
        nats = self.endpoints["nats"]
        postgres = self.endpoints["postgres"]
        external = "  (external: HINDSIGHT_{}_URL)"
        rows: list[list[object]] = [
            ["NATS", nats["url"] + ("" if nats["managed"] else external.format("NATS"))],
            ["NATS monitor", nats["monitor_url"]],
            [
                "PostgreSQL",
                postgres["url"] + ("" if postgres["managed"] else external.format("DATABASE")),
            ],
            ["Logs", self.config.log_dir],
            ["Admin token", f"{token_path(self.config.data_dir)} (or $HINDSIGHT_ADMIN_TOKEN)"],
        ]
        print(f"\nHindsight dev stack (data dir {self.config.data_dir})\n", flush=True)
        print(format_table(["ENDPOINT", "URL"], rows))
        print()
        pids = {child.name: child.pid for child in self.supervisor.children}
        if self.services:
            service_rows = [
                [svc.name, pids.get(svc.name), svc.ports.get("grpc"), svc.ports.get("http")]
                for svc in self.services
            ]
            print(format_table(["SERVICE", "PID", "gRPC", "HTTP"], service_rows))
        else:
            print("  No services installed (none declares a `hindsight.services` entry point).")
        self.print_where_to_look()
        print(f"\n{READY_LINE}", flush=True)

    def print_where_to_look(self) -> None:
        """What a newcomer opens first: the UI and its login, a search, the registry."""
        ports = {svc.name: svc.ports for svc in self.services}
        lines: list[str] = []
        if "labeling" in ports:
            lines.append(
                f"  Labeling UI      http://127.0.0.1:{ports['labeling']['http']}/  "
                f"(login {DEV_LABELER} / password in "
                f"{labeler_password_path(self.config.data_dir)})"
            )
        if "memory" in ports:
            lines.append(
                f"  Memory search    curl -s -XPOST http://127.0.0.1:{ports['memory']['http']}"
                """/v1/search -H 'content-type: application/json' """
                """-d '{"text": "breakout long EURUSD", "k": 5}'"""
            )
        if "registry" in ports:
            lines.append(
                f"  Registry status  http://127.0.0.1:{ports['registry']['http']}/v1/status"
                "  (or `hindsight models`)"
            )
        if "market" in ports:
            lines.append(
                f"  Market bars      curl -s 'http://127.0.0.1:{ports['market']['http']}"
                "/v1/bars?symbol=EURUSD&timeframe=1h&end=2018-01-01T00:00:00Z&n=5'"
            )
        if "gateway" in ports:
            lines.append(
                f"  Score (gRPC)     127.0.0.1:{ports['gateway']['grpc']}  "
                "(`hindsight score --help`)"
            )
        if self.replay:
            lines.append(
                f"  Market replay    {self.config.log_dir / 'replay.log'}  "
                "(disable: --no-replay or HINDSIGHT_REPLAY=off)"
            )
        lines.append(
            "  Grafana          with docker compose: http://localhost:3000 (docs/deploy.md)"
        )
        print("\nWhere to look:\n" + "\n".join(lines))
        if self.env.get("HINDSIGHT_EMBEDDER_ALLOW_RANDOM_WEIGHTS") == "true" and not self.env.get(
            "HINDSIGHT_EMBEDDER_CLIP_WEIGHTS_FILE"
        ):
            print(
                "  note: CLIP runs with random weights (no download possible); set "
                "HINDSIGHT_EMBEDDER_CLIP_WEIGHTS_FILE for real image similarity"
            )

    def live_status(self) -> LiveStatus:
        """The compact status line printed while the stack runs."""
        urls = {
            svc.name: f"http://127.0.0.1:{svc.ports['http']}"
            for svc in self.services
            if svc.name in {"registry", "memory", "labeling"} and "http" in svc.ports
        }
        monitor = self.endpoints.get("nats", {}).get("monitor_url")
        if monitor:
            urls["nats_monitor"] = str(monitor).rstrip("/")
        return LiveStatus(urls, self.config.data_dir, stop_event=self.stop_event)

    def stop(self) -> None:
        results = self.supervisor.stop_all()
        for result in results:
            how = "killed after timeout" if result.killed else describe_exit(result.returncode)
            print(f"  stopped {result.name} (pid {result.pid}, {how})", flush=True)
        self._state_ready = False
        remove_state(state_path(self.config.data_dir))


BAR_DATASETS: tuple[str, ...] = ("EURUSD", "GOOG", "BTCUSD")
"""The backtesting package's bars imported into market on every ``up`` (idempotent: a second
import stores nothing): EURUSD hourly, GOOG daily, BTCUSD monthly (timeframe ``1mo``)."""


def bars_import_spec(dataset: str, *, env: Mapping[str, str], log_dir: Path) -> ChildSpec:
    """``hindsight bars import --dataset <dataset>`` as a one-shot child."""
    return ChildSpec(
        name=f"bars-{dataset.lower()}",
        argv=[sys.executable, "-m", "hindsight.devstack", "bars", "import", "--dataset", dataset],
        env=env,
        log_file=log_dir / f"bars-{dataset.lower()}.log",
        stop_signal=signal.SIGTERM,
        stop_timeout=15.0,
        one_shot=True,
        nice=learning_nice(env),
    )


def replay_spec(*, env: Mapping[str, str], log_dir: Path) -> ChildSpec:
    """The market replay feeder as a one-shot child: done when the data is played."""
    return ChildSpec(
        name="replay",
        argv=[sys.executable, "-m", "hindsight.devstack.replay"],
        env=env,
        log_file=log_dir / "replay.log",
        stop_signal=signal.SIGTERM,
        stop_timeout=15.0,
        one_shot=True,
        nice=learning_nice(env),
    )


def run_up(args: argparse.Namespace) -> int:
    """Start the stack and supervise it until SIGINT/SIGTERM; 0 on a clean stop."""
    try:
        config = StackConfig.from_env(data_dir=args.data_dir)
    except ConfigurationError as exc:
        print(f"hindsight up: {exc}", file=sys.stderr)
        return 2
    config.log_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_data_dir(config.data_dir)
    inspection = inspect_stack(config.data_dir)
    if lock is None or inspection.status is StackStatus.RUNNING:
        pid = inspection.state["supervisor"]["pid"] if inspection.state else "?"
        print(
            f"hindsight up: Hindsight is already running from {config.data_dir} "
            f"(supervisor pid {pid}); see `hindsight status`, stop it with `hindsight down`",
            file=sys.stderr,
        )
        if lock is not None:
            lock.close()
        return 1
    try:
        if inspection.status is StackStatus.STALE and inspection.state is not None:
            leftovers = clean_stale(config.data_dir, inspection.state)
            old_pid = inspection.state["supervisor"]["pid"]
            print(f"Removed a stale state file (supervisor pid {old_pid} is gone).")
            for child in leftovers:
                print(f"  killed leftover {child['name']} (pid {child['pid']})")
        configure_supervisor_logging(config.log_dir / "supervisor.log")
        return _run(config, replay=replay_enabled(args))
    finally:
        lock.close()


def _run(config: StackConfig, *, replay: bool = False) -> int:
    stack = _Stack(config, replay=replay)
    stack.install_signal_handlers()
    code = 0
    try:
        try:
            stack.start()
        except (ConfigurationError, ChildStartError) as exc:
            if not stack.stop_event.is_set():
                print(f"hindsight up: {exc}", file=sys.stderr, flush=True)
                code = 1
        else:
            stack.print_endpoints()
            stack.live_status().start()
            stack.supervisor.run()
    finally:
        print("Stopping Hindsight...", flush=True)
        stack.stop()
        print("Hindsight stopped.", flush=True)
    return code
