"""The supervisor with tiny real child processes (``python -c``), and the state file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hindsight.common.errors import ConfigurationError
from hindsight.devstack import cli as devstack_cli
from hindsight.devstack.ports import PortInUseError, ensure_port_free, free_port
from hindsight.devstack.process import ChildSpec, pid_alive, process_start_time
from hindsight.devstack.stack import replay_spec
from hindsight.devstack.state import (
    StackState,
    StackStatus,
    clean_stale,
    inspect_stack,
    state_path,
    this_process,
    write_state,
)
from hindsight.devstack.supervisor import (
    Backoff,
    Supervisor,
    describe_exit,
    learning_nice,
    service_env,
    service_spec,
)
from hindsight.ops import cli
from hindsight.ops.services import Service, service_ports

# Real child processes, ports and files (no outside servers): integration.
pytestmark = pytest.mark.integration

CRASH = "import sys; sys.exit(3)"
SLEEP = "import time; time.sleep(60)"


def python(name: str, code: str, **kwargs: object) -> ChildSpec:
    return ChildSpec(name=name, argv=[sys.executable, "-c", code], **kwargs)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the timeout"
        time.sleep(0.01)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- backoff -----------------------------------------------------------------------


@pytest.mark.unit
def test_backoff_doubles_from_half_a_second_up_to_thirty() -> None:
    assert [Backoff().delay(n) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


@pytest.mark.unit
def test_describe_exit() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(None) == "did not start"


def test_crashing_child_is_restarted_with_growing_delays() -> None:
    supervisor = Supervisor(backoff=Backoff(initial=0.01, factor=2, maximum=0.04))
    child = supervisor.start(python("crasher", CRASH))
    try:

        def restarted_four_times() -> bool:
            supervisor.poll()
            return child.restarts >= 4

        wait_until(restarted_four_times)
    finally:
        supervisor.stop_all()
    assert child.delays[:4] == [0.01, 0.02, 0.04, 0.04]
    assert child.last_returncode == 3


def test_one_shot_child_is_not_restarted_after_success_but_is_after_failure() -> None:
    supervisor = Supervisor(backoff=Backoff(initial=0.01, factor=2, maximum=0.04))
    done = supervisor.start(python("job", "import sys; sys.exit(0)", one_shot=True))
    failing = supervisor.start(python("flaky-job", CRASH, one_shot=True))
    try:

        def settled() -> bool:
            supervisor.poll()
            return done.proc is None and failing.restarts >= 2

        wait_until(settled)
        for _ in range(20):
            supervisor.poll()
            time.sleep(0.01)
    finally:
        supervisor.stop_all()
    assert done.restarts == 0 and done.last_returncode == 0 and done.restart_at is None
    assert done.finished and not failing.finished
    assert failing.last_returncode == 3


def test_restart_waits_for_the_backoff_delay() -> None:
    clock = FakeClock()
    supervisor = Supervisor(backoff=Backoff(initial=5, maximum=60), clock=clock)
    child = supervisor.start(python("crasher", CRASH))
    try:
        wait_until(lambda: (supervisor.poll(), child.proc is None)[1])
        assert child.delays == [5]
        clock.now += 4.9
        supervisor.poll()
        assert child.proc is None and child.restarts == 0  # not yet
        clock.now += 0.2
        supervisor.poll()
        assert child.restarts == 1
        wait_until(lambda: (supervisor.poll(), child.proc is None)[1])
        assert child.delays == [5, 10]
    finally:
        supervisor.stop_all()


def test_backoff_resets_after_the_child_stayed_up_long_enough() -> None:
    clock = FakeClock()
    backoff = Backoff(initial=1, maximum=60, reset_after=30)
    supervisor = Supervisor(backoff=backoff, clock=clock)
    # Exits only when told to (a file appears), so we control how long it "stayed up".
    flag = Path(f"/tmp/hindsight-test-flag-{os.getpid()}-{time.monotonic_ns()}")
    code = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.01)\n"
        "sys.exit(1)\n"
    )
    child = supervisor.start(python("flaky", code))
    try:
        for expected in ([1], [1, 2], [1, 2, 4]):
            flag.touch()
            wait_until(lambda: (supervisor.poll(), child.proc is None)[1])
            flag.unlink()
            assert child.delays == expected
            clock.now += expected[-1]
            supervisor.poll()
            assert child.proc is not None
        clock.now += backoff.reset_after  # a long good run ...
        flag.touch()
        wait_until(lambda: (supervisor.poll(), child.proc is None)[1])
        assert child.delays == [1, 2, 4, 1]  # ... is forgiven
    finally:
        flag.unlink(missing_ok=True)
        supervisor.stop_all()


def test_stop_all_stops_in_reverse_start_order_and_leaves_nothing() -> None:
    supervisor = Supervisor()
    children = [supervisor.start(python(name, SLEEP)) for name in ("first", "second", "third")]
    pids = [child.pid for child in children]
    results = supervisor.stop_all()
    assert [result.name for result in results] == ["third", "second", "first"]
    assert [result.pid for result in results] == pids[::-1]
    assert not any(result.killed for result in results)
    assert not any(pid_alive(pid) for pid in pids if pid is not None)


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print(6 * 7, flush=True)\n"
        "time.sleep(60)\n"
    )
    spec = python(
        "stubborn",
        code,
        log_file=log,
        stop_timeout=0.3,
        ready=lambda: "\n42\n" in log.read_text(),  # not the echoed argv: the output
    )
    supervisor = Supervisor()
    child = supervisor.start(spec)
    (result,) = supervisor.stop_all()
    assert result.killed
    assert result.returncode == -signal.SIGKILL
    assert child.proc is None and not pid_alive(result.pid)


def test_stop_also_ends_the_childs_own_children(tmp_path: Path) -> None:
    log = tmp_path / "parent.log"
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('grandchild=%d' % p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    pattern = re.compile(r"^grandchild=(\d+)$", re.MULTILINE)
    spec = python("parent", code, log_file=log, ready=lambda: bool(pattern.search(log.read_text())))
    supervisor = Supervisor()
    supervisor.start(spec)
    match = pattern.search(log.read_text())
    assert match is not None
    grandchild = int(match.group(1))
    assert pid_alive(grandchild)
    supervisor.stop_all()
    wait_until(lambda: not pid_alive(grandchild), timeout=10)


def test_children_die_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    # A supervisor in another process, SIGKILLed: its child must get its death signal.
    script = (
        "import sys, time\n"
        "from hindsight.devstack.process import ChildSpec, spawn\n"
        f"p = spawn(ChildSpec(name='orphan', argv=[sys.executable, '-c', {SLEEP!r}]))\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert supervisor.stdout is not None
    orphan = int(supervisor.stdout.readline())
    assert pid_alive(orphan)
    supervisor.kill()
    supervisor.wait(timeout=10)
    wait_until(lambda: not pid_alive(orphan), timeout=10)


# --- state file ------------------------------------------------------------------------


def _state(supervisor_pid: int, start_time: int | None, children: list[int]) -> StackState:
    return {
        "version": 1,
        "supervisor": {"pid": supervisor_pid, "start_time": start_time},
        "data_dir": "/nowhere",
        "log_dir": "/nowhere/logs",
        "started_at": "2026-01-01T00:00:00+00:00",
        "endpoints": {},
        "children": [
            {
                "name": f"child{pid}",
                "pid": pid,
                "start_time": process_start_time(pid),
                "health_url": None,
                "tcp": None,
                "log_file": None,
                "restarts": 0,
            }
            for pid in children
        ],
    }


def _exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.unit
def test_no_state_file_means_absent(tmp_path: Path) -> None:
    assert inspect_stack(tmp_path).status is StackStatus.ABSENT


def test_state_of_a_live_supervisor_is_running(tmp_path: Path) -> None:
    me = this_process()
    write_state(state_path(tmp_path), _state(me["pid"], me["start_time"], []))
    assert inspect_stack(tmp_path).status is StackStatus.RUNNING


def test_state_of_a_dead_supervisor_is_stale_and_cleaned(tmp_path: Path) -> None:
    write_state(state_path(tmp_path), _state(_exited_pid(), None, []))
    inspection = inspect_stack(tmp_path)
    assert inspection.status is StackStatus.STALE
    assert inspection.state is not None
    assert clean_stale(tmp_path, inspection.state) == []
    assert not state_path(tmp_path).exists()


def test_recycled_supervisor_pid_is_stale(tmp_path: Path) -> None:
    # Our own pid, but a different start time: another process got the pid.
    me = this_process()
    assert me["start_time"] is not None
    write_state(state_path(tmp_path), _state(me["pid"], me["start_time"] - 1, []))
    assert inspect_stack(tmp_path).status is StackStatus.STALE


def test_cleaning_a_stale_state_kills_leftover_children(tmp_path: Path) -> None:
    leftover = subprocess.Popen([sys.executable, "-c", SLEEP], start_new_session=True)
    try:
        write_state(state_path(tmp_path), _state(_exited_pid(), None, [leftover.pid]))
        inspection = inspect_stack(tmp_path)
        assert inspection.state is not None
        killed = clean_stale(tmp_path, inspection.state)
        assert [child["pid"] for child in killed] == [leftover.pid]
        assert leftover.wait(timeout=10) == -signal.SIGKILL
    finally:
        leftover.kill()
        leftover.wait()


@pytest.mark.unit
def test_state_file_is_json(tmp_path: Path) -> None:
    write_state(state_path(tmp_path), _state(1, None, []))
    assert json.loads(state_path(tmp_path).read_text())["supervisor"]["pid"] == 1


# --- services, output, ports, cli ------------------------------------------------------


@pytest.mark.unit
def test_service_env_and_spec(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "HINDSIGHT_IMAGE_ROOTS": "/charts", "HINDSIGHT_NATS_URL": "old"}
    env = service_env(
        nats_url="nats://127.0.0.1:1",
        database_url="postgresql://h@127.0.0.1:2/hindsight",
        data_dir=tmp_path,
        base=base,
    )
    assert env["HINDSIGHT_NATS_URL"] == "nats://127.0.0.1:1"
    assert env["HINDSIGHT_DATABASE_URL"] == "postgresql://h@127.0.0.1:2/hindsight"
    assert env["HINDSIGHT_DATA_DIR"] == str(tmp_path)
    assert env["HINDSIGHT_ARTIFACT_ROOT"] == str(tmp_path / "artifacts")
    assert env["HINDSIGHT_IMAGE_ROOTS"] == "/charts"
    assert env["PATH"] == "/bin"
    kept = service_env(
        nats_url="n", database_url="d", data_dir=tmp_path, base={"HINDSIGHT_ARTIFACT_ROOT": "/a"}
    )
    assert kept["HINDSIGHT_ARTIFACT_ROOT"] == "/a"

    spec = service_spec(
        Service(name="scorer", module="hindsight.scorer", ports=service_ports("scorer", {})),
        env=env,
        log_dir=tmp_path,
    )
    assert spec.argv == [sys.executable, "-m", "hindsight.scorer"]
    assert spec.health_url == "http://127.0.0.1:8086/healthz"
    assert spec.log_file == tmp_path / "scorer.log"
    assert dict(spec.extra) == {"grpc": 50052, "http": 8086}
    assert spec.ready is not None, "a service counts as started once /healthz answers"
    assert service_ports("scorer", {"HINDSIGHT_SCORER_GRPC_PORT": "6000"}) == {
        "grpc": 6000,
        "http": 8086,
    }


def test_a_moved_port_moves_its_clients_unless_they_are_set(tmp_path: Path) -> None:
    # Found by the first-run test: with the scorer on another port, the gateway kept
    # dialling 50052 and answered fallbacks forever.
    moved = {
        "HINDSIGHT_SCORER_GRPC_PORT": "6000",
        "HINDSIGHT_REGISTRY_HTTP_PORT": "6001",
        "HINDSIGHT_MEMORY_HTTP_PORT": "6002",
    }
    env = service_env(nats_url="n", database_url="d", data_dir=tmp_path, base=moved)
    assert env["HINDSIGHT_GATEWAY_SCORERS"] == "127.0.0.1:6000"
    assert env["HINDSIGHT_TRAINER_REGISTRY_URL"] == "http://127.0.0.1:6001"
    assert env["HINDSIGHT_SCORER_REGISTRY_URL"] == "http://127.0.0.1:6001"
    assert env["HINDSIGHT_LABELING_MEMORY_URL"] == "http://127.0.0.1:6002"
    default = service_env(nats_url="n", database_url="d", data_dir=tmp_path, base={})
    assert default["HINDSIGHT_GATEWAY_SCORERS"] == "127.0.0.1:50052"
    explicit = service_env(
        nats_url="n",
        database_url="d",
        data_dir=tmp_path,
        base={**moved, "HINDSIGHT_GATEWAY_SCORERS": "scorer-a:50052,scorer-b:50052"},
    )
    assert explicit["HINDSIGHT_GATEWAY_SCORERS"] == "scorer-a:50052,scorer-b:50052"


def test_busy_port_error_names_the_variable() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError, match="HINDSIGHT_DEV_PG_PORT"):
            ensure_port_free(port, what="PostgreSQL", env_var="HINDSIGHT_DEV_PG_PORT")
    ensure_port_free(free_port(), what="PostgreSQL", env_var="HINDSIGHT_DEV_PG_PORT")


@pytest.mark.unit
def test_the_dev_stack_commands_plug_into_the_hindsight_command() -> None:
    # Entry points of hindsight-devstack (group hindsight.commands), next to the operator
    # commands that hindsight-ops builds in.
    commands = cli.all_commands()
    assert commands["up"] is devstack_cli.UP and commands["down"] is devstack_cli.DOWN
    assert commands["status"] is devstack_cli.STATUS
    assert commands["replay"] is devstack_cli.REPLAY
    assert {"train", "models", "promote", "rollback", "score", "report"} <= set(commands)
    for name in ("up", "status", "down", "replay"):
        assert name not in cli.COMMANDS  # not built into hindsight-ops
    # The plug-ins grouped by package: the dev stack's together.
    assert list(cli.plugged_in_commands())[:4] == ["down", "replay", "status", "up"]


def test_status_and_down_when_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--data-dir", str(tmp_path), "status"]) == 3
    assert "not running" in capsys.readouterr().out
    assert cli.main(["--data-dir", str(tmp_path), "down"]) == 0
    write_state(state_path(tmp_path), _state(_exited_pid(), None, []))
    assert cli.main(["--data-dir", str(tmp_path), "status"]) == 3
    assert "stale" in capsys.readouterr().out


@pytest.mark.unit
def test_status_shows_a_finished_one_shot_child_as_healthy() -> None:
    from hindsight.devstack.control import _child_row

    record = {
        "name": "replay",
        "pid": None,
        "start_time": None,
        "health_url": None,
        "tcp": None,
        "log_file": None,
        "restarts": 0,
    }
    assert _child_row({**record, "finished": True}) == (True, ["replay", None, "finished", "-", 0])  # type: ignore[typeddict-item]
    healthy, row = _child_row(record)  # type: ignore[arg-type]
    assert not healthy and row[2] == "restarting"


def _autogroup_nice(pid: int) -> int | None:
    """The nice value of the process's autogroup ("/autogroup-N nice K"), None without one."""
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()
    except OSError:
        return None
    return int(text.split()[-1])


def _niceness(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ..."; niceness is field 19, the 17th after comm.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_learning_side_runs_niced_and_the_score_path_does_not(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/bin")}
    specs = [
        service_spec(
            Service(name=name, module=f"hindsight.{name}", ports=service_ports(name, {})),
            env=env,
            log_dir=tmp_path,
        )
        for name in ("gateway", "scorer", "registry", "trainer", "embedder", "memory", "labeling")
    ]
    specs.append(replay_spec(env=env, log_dir=tmp_path))
    # The real specs, started as the supervisor starts them, running a sleeper instead.
    sleeper = [sys.executable, "-c", SLEEP]
    supervisor = Supervisor()
    ours = os.nice(0)
    try:
        children = [supervisor.start(replace(s, argv=sleeper, ready=None)) for s in specs]
        got = {child.name: _niceness(child.pid or 0) - ours for child in children}
        groups = {child.name: _autogroup_nice(child.pid or 0) for child in children}
    finally:
        supervisor.stop_all()
    if all(g is not None for g in groups.values()):
        # Autogroup scheduling: each child leads its own session, hence its own autogroup,
        # and CPU is shared between autogroups by their nice value; it must carry the nice.
        assert groups == {name: 0 if name in ("gateway", "scorer") else 10 for name in groups}
    assert got == {
        "gateway": 0,
        "scorer": 0,
        "registry": 10,
        "trainer": 10,
        "embedder": 10,
        "memory": 10,
        "labeling": 10,
        "replay": 10,
    }


def test_learning_niceness_is_configurable() -> None:
    assert learning_nice({}) == 10
    assert learning_nice({"HINDSIGHT_DEV_LEARNING_NICE": "0"}) == 0
    assert learning_nice({"HINDSIGHT_DEV_LEARNING_NICE": "5"}) == 5
    with pytest.raises(ConfigurationError, match="0-19"):
        learning_nice({"HINDSIGHT_DEV_LEARNING_NICE": "25"})
    spec = service_spec(
        Service(name="trainer", module="hindsight.trainer", ports={}),
        env={"HINDSIGHT_DEV_LEARNING_NICE": "3"},
        log_dir=Path("/tmp"),
    )
    assert spec.nice == 3
