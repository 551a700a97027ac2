"""``hindsight status`` and ``hindsight down``: talk to a running stack via its state file."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from urllib.parse import urlsplit

import httpx

from hindsight.common.cli import resolve_data_dir
from hindsight.ops.output import format_table

from .ports import tcp_open
from .process import same_process
from .state import ChildRecord, StackStatus, clean_stale, inspect_stack, state_path

__all__ = [
    "EXIT_DEGRADED",
    "EXIT_NOT_RUNNING",
    "add_down_arguments",
    "run_down",
    "run_status",
]

EXIT_DEGRADED = 1
EXIT_NOT_RUNNING = 3  # as LSB init scripts say "program is not running"


def _http_health(url: str) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        return False, f"unreachable ({type(exc).__name__})"
    if response.status_code == 200:
        return True, "ok"
    return False, f"failing (HTTP {response.status_code})"


def _tcp_health(host: str, port: int) -> tuple[bool, str]:
    return (True, "ok") if tcp_open(host, port, timeout=1.0) else (False, "unreachable")


def _child_row(child: ChildRecord) -> tuple[bool, list[object]]:
    pid = child.get("pid")
    alive = pid is not None and same_process(pid, child.get("start_time"))
    if pid is None and child.get("finished"):
        state, healthy, health = "finished", True, "-"
    elif pid is None:
        state, healthy, health = "restarting", False, "-"
    elif not alive:
        state, healthy, health = "gone", False, "-"
    elif child.get("health_url"):
        state = "running"
        healthy, health = _http_health(str(child["health_url"]))
    elif child.get("tcp"):
        host, port = child["tcp"] or ("", 0)
        state = "running"
        healthy, health = _tcp_health(str(host), int(port))
    else:
        state, healthy, health = "running", True, "-"
    row: list[object] = [child["name"], pid, state, health, child.get("restarts", 0)]
    return healthy, row


def _external_row(name: str, url: str, default_port: int) -> tuple[bool, list[object]]:
    parts = urlsplit(url.split(",")[0].strip())
    healthy, health = _tcp_health(parts.hostname or "127.0.0.1", parts.port or default_port)
    return healthy, [f"{name} (external)", None, "-", health, None]


def run_status(args: argparse.Namespace) -> int:
    """Print the stack's processes and health: 0 up, 1 degraded, 3 not running."""
    data_dir = resolve_data_dir(args.data_dir)
    inspection = inspect_stack(data_dir)
    if inspection.status is StackStatus.ABSENT or inspection.state is None:
        print(f"Hindsight is not running (no {state_path(data_dir)}).")
        return EXIT_NOT_RUNNING
    state = inspection.state
    supervisor_pid = state["supervisor"]["pid"]
    if inspection.status is StackStatus.STALE:
        print(
            f"Hindsight is not running: {state_path(data_dir)} is stale "
            f"(supervisor pid {supervisor_pid} is gone); `hindsight up` will clean it."
        )
        return EXIT_NOT_RUNNING
    rows: list[list[object]] = []
    all_healthy = True
    for child in state["children"]:
        healthy, row = _child_row(child)
        all_healthy = all_healthy and healthy
        rows.append(row)
    endpoints = state.get("endpoints", {})
    for name, key, port in (("nats", "nats", 4222), ("postgres", "postgres", 5432)):
        endpoint = endpoints.get(key) or {}
        if endpoint and not endpoint.get("managed", True):
            healthy, row = _external_row(name, str(endpoint["url"]), port)
            all_healthy = all_healthy and healthy
            rows.append(row)
    summary = "up" if all_healthy else "up but DEGRADED"
    print(
        f"Hindsight is {summary} (supervisor pid {supervisor_pid}, "
        f"since {state['started_at']}, data dir {state['data_dir']})\n"
    )
    print(format_table(["NAME", "PID", "STATE", "HEALTH", "RESTARTS"], rows))
    print()
    nats = endpoints.get("nats") or {}
    postgres = endpoints.get("postgres") or {}
    print(
        format_table(
            ["ENDPOINT", "URL"],
            [
                ["NATS", nats.get("url")],
                ["NATS monitor", nats.get("monitor_url")],
                ["PostgreSQL", postgres.get("url")],
                ["Logs", state.get("log_dir")],
            ],
        )
    )
    return 0 if all_healthy else EXIT_DEGRADED


def add_down_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the stack to stop (default: %(default)s)",
    )


def run_down(args: argparse.Namespace) -> int:
    """SIGTERM the supervisor and wait until it has exited (it stops every child)."""
    data_dir = resolve_data_dir(args.data_dir)
    inspection = inspect_stack(data_dir)
    if inspection.status is StackStatus.ABSENT or inspection.state is None:
        print(f"Hindsight is not running (no {state_path(data_dir)}).")
        return 0
    if inspection.status is StackStatus.STALE:
        leftovers = clean_stale(data_dir, inspection.state)
        print("Hindsight is not running; removed a stale state file.")
        for child in leftovers:
            print(f"  killed leftover {child['name']} (pid {child['pid']})")
        return 0
    supervisor = inspection.state["supervisor"]
    pid = supervisor["pid"]
    print(f"Stopping Hindsight (supervisor pid {pid})...", flush=True)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + args.timeout
    while same_process(pid, supervisor.get("start_time")):
        if time.monotonic() > deadline:
            print(
                f"hindsight down: the supervisor (pid {pid}) did not exit within "
                f"{args.timeout:g} s; see {inspection.state['log_dir']}/supervisor.log",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)
    print("Hindsight stopped.")
    return 0
