"""The state file ``DATA_DIR/stack.json`` of a running dev stack, and its lock.

The supervisor writes the file (atomically) whenever a child starts or stops and removes
it on exit. A file whose supervisor is gone is stale (the stack was SIGKILLed): it is
recognised by pid *and* process start time, so a recycled pid does not fool us.
An ``flock`` on ``DATA_DIR/stack.lock``, held for the supervisor's lifetime, keeps two
stacks from sharing a data dir; the kernel drops it when the process dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any, NotRequired, TypedDict

from .process import process_start_time, same_process

__all__ = [
    "STATE_FILE",
    "ChildRecord",
    "Inspection",
    "ProcessRecord",
    "StackState",
    "StackStatus",
    "clean_stale",
    "inspect_stack",
    "lock_data_dir",
    "read_state",
    "remove_state",
    "state_path",
    "this_process",
    "write_state",
]

STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"


class ProcessRecord(TypedDict):
    pid: int
    start_time: int | None


class ChildRecord(TypedDict):
    name: str
    pid: int | None
    """None while the child waits to be restarted."""
    start_time: int | None
    health_url: str | None
    tcp: list[Any] | None
    """[host, port] accepting connections when the child is up."""
    log_file: str | None
    restarts: int
    finished: NotRequired[bool]
    """A one-shot child (the replay) that completed its job: not running, and healthy."""


class StackState(TypedDict):
    version: int
    supervisor: ProcessRecord
    data_dir: str
    log_dir: str
    started_at: str
    endpoints: dict[str, Any]
    children: list[ChildRecord]


class StackStatus(Enum):
    ABSENT = "absent"
    RUNNING = "running"
    STALE = "stale"


@dataclass(frozen=True)
class Inspection:
    status: StackStatus
    state: StackState | None


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def this_process() -> ProcessRecord:
    pid = os.getpid()
    return {"pid": pid, "start_time": process_start_time(pid)}


def write_state(path: Path, state: StackState) -> None:
    """Replace the state file atomically (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def read_state(path: Path) -> StackState | None:
    """The state in ``path``; None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "supervisor" not in data:
        return None
    state: StackState = data  # type: ignore[assignment]
    return state


def remove_state(path: Path) -> None:
    path.unlink(missing_ok=True)


def inspect_stack(data_dir: Path) -> Inspection:
    """Is a stack running from ``data_dir``, gone, or gone leaving a stale file?"""
    state = read_state(state_path(data_dir))
    if state is None:
        return Inspection(StackStatus.ABSENT, None)
    supervisor = state["supervisor"]
    if same_process(supervisor["pid"], supervisor.get("start_time")):
        return Inspection(StackStatus.RUNNING, state)
    return Inspection(StackStatus.STALE, state)


def clean_stale(data_dir: Path, state: StackState) -> list[ChildRecord]:
    """Remove a stale state file; SIGKILL children of that stack still alive (returned)."""
    leftovers: list[ChildRecord] = []
    for child in state.get("children", []):
        pid = child.get("pid")
        if pid is not None and same_process(pid, child.get("start_time")):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            leftovers.append(child)
    remove_state(state_path(data_dir))
    return leftovers


def lock_data_dir(data_dir: Path) -> IO[str] | None:
    """Take the data dir's lock for this process's lifetime; None when another holds it."""
    handle = open(data_dir / LOCK_FILE, "a")  # kept open while we run
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
