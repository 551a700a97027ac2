"""The dev stack and the test harness against real processes (no mocks)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.devstack.ports import free_port, tcp_open
from hindsight.devstack.process import pid_alive
from hindsight.devstack.supervisor import discover_services

pytestmark = pytest.mark.integration


# --- (1) the fixtures give real servers ---------------------------------------------


async def test_nats_fixture_gives_jetstream(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    await js.add_stream(name="DEVSTACK_SMOKE", subjects=["devstack.smoke"])
    try:
        ack = await js.publish("devstack.smoke", b"hello")
        assert ack.stream == "DEVSTACK_SMOKE"
        assert ack.seq >= 1
        msg = await js.get_msg("DEVSTACK_SMOKE", ack.seq)
        assert msg.data == b"hello"
    finally:
        await js.delete_stream("DEVSTACK_SMOKE")


async def test_database_fixture_answers(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_fresh_database_is_new_and_empty(database_url: str, fresh_database: str) -> None:
    assert fresh_database != database_url
    conn = await asyncpg.connect(fresh_database)
    try:
        name = await conn.fetchval("SELECT current_database()")
        assert name.startswith("test_")
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
        await conn.execute("CREATE TABLE t (id int)")
    finally:
        await conn.close()
    admin = await asyncpg.connect(database_url)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        assert exists == 1
    finally:
        await admin.close()


# --- (2) and (3) `hindsight up` as a person runs it -----------------------------------

READY_LINE = "Hindsight is up. Ctrl-C to stop."
CLI = [sys.executable, "-m", "hindsight.devstack.cli"]


@pytest.fixture
def stack_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: it is mode 0700, and PostgreSQL runs as another OS user.
    path = Path(tempfile.mkdtemp(prefix="hindsight-stack-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Stack:
    """A `hindsight up` process and what it printed."""

    proc: subprocess.Popen[str]
    env: dict[str, str]
    data_dir: Path
    ports: dict[str, int]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def endpoint(self, pattern: str) -> str:
        match = re.search(pattern, self.output)
        assert match is not None, f"{pattern!r} not in the output:\n{self.output}"
        return match.group(0)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=120
        )


def stack_env(data_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HINDSIGHT_NATS_URL", "HINDSIGHT_DATABASE_URL")
    }
    env["HINDSIGHT_DATA_DIR"] = str(data_dir)
    env["HINDSIGHT_DEV_NATS_PORT"] = str(ports["nats"])
    env["HINDSIGHT_DEV_NATS_MONITOR_PORT"] = str(ports["monitor"])
    env["HINDSIGHT_DEV_PG_PORT"] = str(ports["postgres"])
    # The stack's own behaviour is under test here; the replay has its own end-to-end test.
    env["HINDSIGHT_REPLAY"] = "off"
    # The installed services too (as they read it): never the defaults a developer's own
    # stack may be using.
    for service in discover_services():
        for kind in service.ports:
            env[f"HINDSIGHT_{service.name.upper()}_{kind.upper()}_PORT"] = str(free_port())
    return env


def start_stack(data_dir: Path, ports: dict[str, int]) -> Stack:
    """Run `hindsight up` and wait for its endpoint table (fails with its output if not)."""
    env = stack_env(data_dir, ports)
    proc = subprocess.Popen(
        [*CLI, "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = Stack(proc=proc, env=env, data_dir=data_dir, ports=ports)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            pytest.fail(f"`hindsight up` was not up after 120 s:\n{stack.output}")
        if line is None:
            pytest.fail(f"`hindsight up` exited with {proc.wait()}:\n{stack.output}")
        stack.lines.append(line)
        if line == READY_LINE:
            break

    def keep_reading() -> None:
        while (line := lines.get()) is not None:
            stack.lines.append(line)

    threading.Thread(target=keep_reading, daemon=True).start()
    return stack


def recorded_pids(data_dir: Path) -> list[int]:
    state = json.loads((data_dir / "stack.json").read_text())
    pids = [state["supervisor"]["pid"]]
    pids += [child["pid"] for child in state["children"] if child["pid"] is not None]
    return pids


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def assert_nothing_left(stack: Stack, pids: list[int]) -> None:
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert processes_mentioning(str(stack.data_dir)) == []
    assert [port for port in stack.ports.values() if tcp_open("127.0.0.1", port)] == []
    assert not (stack.data_dir / "stack.json").exists()


def free_ports() -> dict[str, int]:
    return {"nats": free_port(), "monitor": free_port(), "postgres": free_port()}


async def check_endpoints(stack: Stack) -> tuple[str, str]:
    """JetStream and PostgreSQL answer at the printed endpoints; returns their URLs."""
    nats_url = stack.endpoint(r"nats://127\.0\.0\.1:\d+")
    monitor_url = stack.endpoint(r"http://127\.0\.0\.1:\d+")
    database_url = stack.endpoint(r"postgresql://\S+")
    assert nats_url == f"nats://127.0.0.1:{stack.ports['nats']}"
    assert database_url == f"postgresql://hindsight@127.0.0.1:{stack.ports['postgres']}/hindsight"
    health = httpx.get(f"{monitor_url}/healthz?js-enabled-only=true", timeout=5)
    assert health.status_code == 200
    client = await nats.connect(nats_url, connect_timeout=5)
    try:
        js = client.jetstream()
        await js.add_stream(name="UP_SMOKE", subjects=["up.smoke"])
        ack = await js.publish("up.smoke", b"hi")
        assert ack.stream == "UP_SMOKE"
    finally:
        await client.close()
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    return nats_url, database_url


async def test_up_status_and_ctrl_c_leave_nothing_running(stack_dir: Path) -> None:
    stack = start_stack(stack_dir, free_ports())
    try:
        await check_endpoints(stack)
        status = stack.cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "nats" in status.stdout and "postgres" in status.stdout
        pids = recorded_pids(stack_dir)
        # supervisor, nats, postgres and every installed service
        assert len(pids) == 3 + len(discover_services())
        stack.proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert stack.proc.wait(timeout=120) == 0, stack.output
    finally:
        if stack.proc.poll() is None:
            stack.proc.kill()
            stack.proc.wait()
    assert "Hindsight stopped." in stack.output
    assert_nothing_left(stack, pids)
    assert stack.cli("status").returncode == 3


async def test_second_up_keeps_the_data_and_down_stops_it(stack_dir: Path) -> None:
    ports = free_ports()
    first = start_stack(stack_dir, ports)
    try:
        assert "Initialised a new PostgreSQL cluster" in first.output
        _, database_url = await check_endpoints(first)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("CREATE TABLE kept (note text)")
            await conn.execute("INSERT INTO kept VALUES ('from run 1')")
        finally:
            await conn.close()
        pg_version = stack_dir / "postgres" / "PG_VERSION"
        created = pg_version.stat().st_mtime_ns
        pids = recorded_pids(stack_dir)
        down = first.cli("down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert first.proc.wait(timeout=120) == 0, first.output
    finally:
        if first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait()
    assert_nothing_left(first, pids)

    second = start_stack(stack_dir, ports)
    try:
        assert "Initialised a new PostgreSQL cluster" not in second.output
        assert pg_version.stat().st_mtime_ns == created
        conn = await asyncpg.connect(second.endpoint(r"postgresql://\S+"))
        try:
            assert await conn.fetchval("SELECT note FROM kept") == "from run 1"
        finally:
            await conn.close()
        pids = recorded_pids(stack_dir)
        down = second.cli("down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "Hindsight stopped." in down.stdout
        assert second.proc.wait(timeout=120) == 0, second.output
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
            second.proc.wait()
    assert_nothing_left(second, pids)
