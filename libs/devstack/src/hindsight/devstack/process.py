"""Child processes we own: spawn, wait until ready, stop, and leave nothing behind.

Every child runs in its own session (``start_new_session``) so that a terminal Ctrl-C
reaches only the supervisor, which then stops children in order. Each child also asks
the kernel for a parent-death signal, so it dies if the supervisor is SIGKILLed.
The parent-death signal belongs to the *thread* that spawned the child: spawn from the
main thread (or another thread that outlives the child), never from a short-lived one.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hindsight.common.errors import HindsightError

__all__ = [
    "ChildSpec",
    "ChildStartError",
    "StopResult",
    "has_exited",
    "log_tail",
    "pid_alive",
    "process_start_time",
    "reap_if_exited",
    "same_process",
    "spawn",
    "start_child",
    "stop_child",
    "wait_ready",
]

_PR_SET_PDEATHSIG = 1


class ChildStartError(HindsightError):
    """A child process exited or never became ready while starting."""


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """How to run one child process and how to tell that it works."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    """The whole environment of the child; ``None`` inherits ours."""
    cwd: Path | None = None
    log_file: Path | None = None
    """stdout and stderr go here (appended); ``None`` discards them."""
    user: str | None = None
    """Run as this OS user (only meaningful when we are root)."""
    health_url: str | None = None
    """An HTTP URL answering 200 when the child is healthy (for ``status``)."""
    tcp: tuple[str, int] | None = None
    """A TCP endpoint that accepts connections when the child is up (for ``status``)."""
    ready: Callable[[], bool] | None = None
    """Start-up gate: the child counts as started once this returns True."""
    on_ready: Callable[[], None] | None = None
    """Runs once after every (re)start, when ``ready`` has passed."""
    ready_timeout: float = 60.0
    stop_signal: int = signal.SIGTERM
    death_signal: int = signal.SIGTERM
    stop_timeout: float = 10.0
    extra: Mapping[str, object] = field(default_factory=dict)
    """Free-form facts shown to people (ports ...)."""
    one_shot: bool = False
    """A job, not a server: exit code 0 means done (not restarted); a failure is restarted."""
    nice: int = 0
    """Added to our niceness in the child: > 0 runs it at a lower CPU priority."""


@dataclass(frozen=True)
class StopResult:
    """What happened to one child when it was stopped."""

    name: str
    pid: int
    returncode: int | None
    killed: bool


def _libc_prctl() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    prctl: Callable[..., int] = libc.prctl
    return prctl


def _child_preexec(sig: int, nice: int) -> Callable[[], None]:
    # Resolved in the parent: the child between fork and exec should only make syscalls.
    prctl = _libc_prctl()
    parent = os.getpid()

    def preexec() -> None:
        # subprocess runs preexec_fn after setuid/setgid, and the kernel clears the
        # parent-death signal on credential changes, so this order is the one that works.
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if nice:
            os.nice(nice)
            # The child leads a new session, so with the kernel's autogroup scheduling
            # (CONFIG_SCHED_AUTOGROUP, on by default) it is in an autogroup of its own, and a
            # process's nice value only ranks it within its autogroup: CPU is shared between
            # autogroups by *their* nice value. Without this, a niced learning-side service
            # would still get an equal share against the gateway and the scorer.
            try:
                fd = os.open("/proc/self/autogroup", os.O_WRONLY)
            except OSError:
                pass  # no autogroup scheduling here: the process nice is all there is
            else:
                try:
                    os.write(fd, str(nice).encode())
                except OSError:
                    pass
                finally:
                    os.close(fd)
        if os.getppid() != parent:  # the parent died before prctl: nobody would tell us
            os.kill(os.getpid(), sig)

    return preexec


def spawn(spec: ChildSpec) -> subprocess.Popen[bytes]:
    """Start the child in its own session; it dies with us. Does not wait for readiness."""
    user_kwargs: dict[str, object] = {}
    if spec.user is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(spec.user)
        user_kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    if spec.log_file is not None:
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(spec.log_file, "ab")  # handed to the child, closed below
    else:
        out = open(os.devnull, "wb")
    try:
        header = f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting {spec.name}: "
        out.write((header + " ".join(spec.argv) + "\n").encode())
        out.flush()
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            list(spec.argv),
            env=dict(spec.env) if spec.env is not None else None,
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_child_preexec(spec.death_signal, spec.nice),
            **user_kwargs,
        )
    finally:
        out.close()


def has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """True once the child has exited, *without* reaping it.

    The zombie keeps its pid (and so its process group id) reserved, which makes it
    safe to kill what is left of its process group before reaping it.
    """
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll() is not None
    return info is not None


def _reap(proc: subprocess.Popen[bytes]) -> int:
    # The child ran in its own session, so its pid is its process group id: kill any
    # grandchildren it left (workers, postgres backends) while the zombie holds the id.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait()


def reap_if_exited(proc: subprocess.Popen[bytes]) -> int | None:
    """The exit code if the child has exited (reaping it and its group), else None."""
    if not has_exited(proc):
        return None
    return _reap(proc)


def stop_child(proc: subprocess.Popen[bytes], *, name: str, sig: int, timeout: float) -> StopResult:
    """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL the whole group."""
    killed = False
    if not has_exited(proc):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while not has_exited(proc) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not has_exited(proc):
            killed = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    returncode = _reap(proc)
    return StopResult(name=name, pid=proc.pid, returncode=returncode, killed=killed)


def log_tail(path: Path | None, *, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16384))
        text = handle.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    proc: subprocess.Popen[bytes],
    spec: ChildSpec,
    *,
    stop: threading.Event | None = None,
) -> None:
    """Poll ``spec.ready`` until it passes; raise ChildStartError if the child dies first."""
    if spec.ready is None:
        return
    deadline = time.monotonic() + spec.ready_timeout
    delay = 0.02
    while True:
        if has_exited(proc):
            code = _reap(proc)
            raise ChildStartError(_start_failure(spec, f"exited with code {code}"))
        if spec.ready():
            return
        if stop is not None and stop.is_set():
            raise ChildStartError(f"{spec.name}: start-up interrupted")
        if time.monotonic() > deadline:
            stop_child(proc, name=spec.name, sig=spec.stop_signal, timeout=spec.stop_timeout)
            raise ChildStartError(
                _start_failure(spec, f"was not ready after {spec.ready_timeout:.0f} s")
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _start_failure(spec: ChildSpec, what: str) -> str:
    message = f"{spec.name} {what}"
    if spec.log_file is not None:
        message += f" (log: {spec.log_file})"
        tail = log_tail(spec.log_file)
        if tail:
            message += "\n" + tail
    return message


def start_child(spec: ChildSpec, *, stop: threading.Event | None = None) -> subprocess.Popen[bytes]:
    """Spawn, wait until ready, run ``on_ready``; on any failure leave nothing running."""
    proc = spawn(spec)
    try:
        wait_ready(proc, spec, stop=stop)
        if spec.on_ready is not None:
            spec.on_ready()
    except BaseException:
        stop_child(proc, name=spec.name, sig=spec.stop_signal, timeout=spec.stop_timeout)
        raise
    return proc


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _read_stat(pid)
    return stat is None or stat[0] != "Z"


def _read_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot), or None if gone."""
    stat = _read_stat(pid)
    return int(stat[19]) if stat is not None else None


def same_process(pid: int, start_time: int | None) -> bool:
    """True when ``pid`` is alive and is still the process that had ``start_time``."""
    if not pid_alive(pid):
        return False
    return start_time is None or process_start_time(pid) == start_time
