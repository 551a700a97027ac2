"""The dev stack and the test harness against real processes (no mocks)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.devstack.ports import free_port, port_in_use, tcp_open
from hindsight.devstack.process import pid_alive
from hindsight.devstack.supervisor import discover_services
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

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


# --- (2) `hindsight up` as a newcomer runs it: the first run, then a second -------------
#
# One test starts the whole stack twice (each start costs minutes on a small machine): the
# first `hindsight up` on an empty data dir, with the market replay, until a promoted model
# serves, stopped with Ctrl-C; then a second `hindsight up` on the same data dir, which keeps
# the data, publishes nothing again, and stops with `hindsight down`.

READY_LINE = "Hindsight is up. Ctrl-C to stop."
CLI = [sys.executable, "-m", "hindsight.devstack.cli"]
MODEL = "trade_success"
FAMILY = "playbook"


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
    reader: threading.Thread | None = None

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

    def wait(self, timeout: float) -> int:
        """The exit status of `hindsight up`, once everything it printed is in ``lines``."""
        returncode = self.proc.wait(timeout=timeout)
        if self.reader is not None:
            self.reader.join(timeout=30)
        return returncode


def stack_env(data_dir: Path, ports: dict[str, int], replay: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HINDSIGHT_NATS_URL", "HINDSIGHT_DATABASE_URL", "HINDSIGHT_REPLAY")
    }
    env["HINDSIGHT_DATA_DIR"] = str(data_dir)
    env["HINDSIGHT_DEV_NATS_PORT"] = str(ports["nats"])
    env["HINDSIGHT_DEV_NATS_MONITOR_PORT"] = str(ports["monitor"])
    env["HINDSIGHT_DEV_PG_PORT"] = str(ports["postgres"])
    env.update(replay)
    # The installed services too (as they read it): never the defaults a developer's own
    # stack may be using.
    for service in discover_services():
        for kind in service.ports:
            env[f"HINDSIGHT_{service.name.upper()}_{kind.upper()}_PORT"] = str(stack_port())
    return env


def start_stack(data_dir: Path, ports: dict[str, int], env: dict[str, str]) -> Stack:
    """Run `hindsight up` and wait for its endpoint table (fails with its output if not)."""
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
    # Every service starts in turn and must answer /readyz: on 2 cores shared with other
    # test runs (load ~7) that took up to ~115 s, so 120 s failed a healthy start.
    deadline = time.monotonic() + 240
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.send_signal(signal.SIGINT)  # its children too, not only the supervisor
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            pytest.fail(f"`hindsight up` was not up after 240 s:\n{stack.output}")
        if line is None:
            pytest.fail(f"`hindsight up` exited with {proc.wait()}:\n{stack.output}")
        stack.lines.append(line)
        if line == READY_LINE:
            break

    def keep_reading() -> None:
        while (line := lines.get()) is not None:
            stack.lines.append(line)

    stack.reader = threading.Thread(target=keep_reading, daemon=True)
    stack.reader.start()
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


def stack_port() -> int:
    """A port free now, below the ephemeral range where possible. An ephemeral one (what
    `free_port()` gives) can be taken by any outgoing connection, the stack's own included,
    before the service binds it: that failed a run once ("cannot bind the gRPC server")."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    pick = random.SystemRandom()  # not pytest-randomly's seeded `random`: runs may overlap
    for _ in range(100 if low > 11_000 else 0):
        port = pick.randrange(10_000, low)
        if not port_in_use(port):
            return port
    return free_port()


def free_ports() -> dict[str, int]:
    return {"nats": stack_port(), "monitor": stack_port(), "postgres": stack_port()}


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


FIRST_RUN = {
    # EURUSD only, replayed as fast as it goes, and the small CLIP: the same path as
    # `make run` (DEV_DEFAULTS for everything else), in a CI-sized time.
    "HINDSIGHT_REPLAY_DATA": "eurusd",
    "HINDSIGHT_REPLAY_FAST": "true",
    "HINDSIGHT_EMBEDDER_CLIP_ARCH": "hindsight-tiny-clip",
    # The replay plays the trading engine with a 200 ms Score deadline; on 2 busy cores a
    # call can miss it (counted as a score failure, not a fallback). A calm deadline keeps
    # "every signal scored" exact here.
    "HINDSIGHT_REPLAY_SCORE_TIMEOUT_S": "2.0",
}


def _service_url(stack: Stack, service: str) -> str:
    return f"http://127.0.0.1:{stack.env[f'HINDSIGHT_{service.upper()}_HTTP_PORT']}"


def _json(url: str) -> Any:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _wait(
    what: str,
    probe: Callable[[], Any],
    timeout: float,
    stack: Stack,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll ``probe`` until it is truthy; on a timeout fail with ``explain()`` (what to read
    first) and the tail of what `hindsight up` said."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(1.0)
    tail = "\n".join(stack.lines[-40:])
    extra = f"{explain()}\n" if explain is not None else ""
    pytest.fail(
        f"timed out after {timeout:.0f} s waiting for {what}\n{extra}`hindsight up` said:\n{tail}"
    )


def _learning_summary(stack: Stack) -> str:
    """The training runs and the registry's versions with their gate verdicts, one line each
    (what to read first when no model reached production)."""
    lines = ["training runs:"]
    for r in _json(f"{_service_url(stack, 'trainer')}/v1/runs") or []:
        head = r.get("headline") or {}
        lines.append(
            f"  {r['run_id'][:8]} {r['trigger']}/{r['mode']} {r['status']} "
            f"rows={r.get('dataset_size')} version={r.get('version')} "
            f"test_rows={head.get('test_rows')} auc={head.get('roc_auc')} "
            f"reason={r.get('reason')!r} error={r.get('error')!r}"
        )
    for name in (MODEL, FAMILY):
        versions = _json(f"{_service_url(stack, 'registry')}/v1/models/{name}/versions") or []
        lines.append(f"registry versions of {name}: " + json.dumps(versions, default=str)[:4000])
    return "\n".join(lines)


def _family_expected(
    release: Path, features: dict[str, float], cluster: str
) -> tuple[Any, dict[str, tuple[str, str, float]]]:
    """The release's card and, per head, (member, member version, value) computed by running
    the member's ONNX file directly on ``features`` (the request's cluster routes entry)."""
    import numpy as np
    import onnxruntime as ort

    from hindsight.common.family import CLUSTER_CODES, CLUSTER_FEATURE, HEADS, load_family_card

    card = load_family_card(release)
    columns = {**features, CLUSTER_FEATURE: CLUSTER_CODES[cluster]}
    expected: dict[str, tuple[str, str, float]] = {}
    for head in HEADS:
        member = card.head_member(head, cluster)
        x = np.array([[columns[f] for f in member.features]], dtype=np.float32)
        session = ort.InferenceSession(
            str(release / member.file), providers=["CPUExecutionProvider"]
        )
        out = session.run([member.output], {"input": x})[0]
        value = out[0, 1] if member.kind == "binary" else out[0, member.served_column()]
        expected[head] = (member.name, member.version, float(value))
    return card, expected


def _replay_progress(data_dir: Path) -> dict[str, Any]:
    progress: dict[str, Any] = json.loads(
        next((data_dir / "replay").glob("*.progress.json")).read_text()
    )
    return progress


def _image_records(stack: Stack) -> int:
    stats = _json(f"{_service_url(stack, 'memory')}/v1/collections") or {}
    return sum(p["records"] for p in stats.get("physical", []) if p["modality"] == "image")


def _labeling_items(stack: Stack) -> float:
    try:
        text = httpx.get(f"{_service_url(stack, 'labeling')}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hindsight_labeling_queue_items{")
    )


# What a second `hindsight up` must not add to: the replay's events and what services
# derive from them one to one. Training events are left out on purpose: the trainer may
# legitimately train again (the quiet-flow rule) whenever the stack runs.
SETTLED_SUBJECTS = (
    "signal.features",
    "signal.outcome",
    "png.created",
    "json.created",
    "embedding.created",
    "prediction.logged",
    "label.saved",
    "signal.labeled",
)


async def _subject_counts(nats_url: str) -> dict[str, int]:
    client = await nats.connect(nats_url, connect_timeout=5)
    try:
        info = await client.jetstream().stream_info("HINDSIGHT", subjects_filter=">")
        return {k: int(v) for k, v in (info.state.subjects or {}).items()}
    finally:
        await client.close()


def _held(stack: Stack) -> dict[str, object]:
    """What the services hold: memory records, labeling queue, trainer rows."""
    memory = _json(f"{_service_url(stack, 'memory')}/v1/collections") or {}
    trainer = _json(f"{_service_url(stack, 'trainer')}/v1/stats") or {}
    labeling = httpx.get(f"{_service_url(stack, 'labeling')}/metrics", timeout=5).text
    return {
        "memory_records": sum(p["records"] for p in memory.get("physical", [])),
        "labeling_items": sum(
            float(line.rsplit(" ", 1)[1])
            for line in labeling.splitlines()
            if line.startswith("hindsight_labeling_queue_items{")
        ),
        "trainer_signals": trainer.get("signals"),
        "trainer_outcomes": trainer.get("outcomes"),
    }


async def _last_signal(nats_url: str) -> dict[str, Any]:
    client = await nats.connect(nats_url, connect_timeout=5)
    try:
        msg = await client.jetstream().get_last_msg("HINDSIGHT", "signal.features")
        event: dict[str, Any] = json.loads(msg.data)
        return event
    finally:
        await client.close()


@pytest.mark.timeout(1500)
async def test_first_run_reaches_a_serving_model_and_resumes_without_duplicates(
    stack_dir: Path,
) -> None:
    """Issue 8's first run through `hindsight up` itself, on an empty data dir: a new
    PostgreSQL cluster; the replay's counts agree end to end (trainer, memory, labeling
    queue); a data-triggered training run, a promoted model that the gateway serves;
    `hindsight status`; Ctrl-C stops everything. Then a second `hindsight up` keeps the data,
    adds no message at all, and `hindsight down` stops it."""
    ports = free_ports()
    started = time.monotonic()
    stack = start_stack(stack_dir, ports, stack_env(stack_dir, ports, FIRST_RUN))
    try:
        assert "Initialised a new PostgreSQL cluster" in stack.output
        assert "Market replay" in stack.output and "Labeling UI" in stack.output
        nats_url, database_url = await check_endpoints(stack)
        # Something of our own in the stack's database: the second `hindsight up` keeps it.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("CREATE TABLE kept (note text)")
            await conn.execute("INSERT INTO kept VALUES ('from run 1')")
        finally:
            await conn.close()
        pg_version = stack_dir / "postgres" / "PG_VERSION"
        created = pg_version.stat().st_mtime_ns

        # Nobody asked for training: enough outcomes did (250 of them, or all of them once
        # the flow went quiet). A version the registry refuses (the 250-trigger fires
        # wherever an ingest batch crosses it; too few test rows) is followed by a run on all
        # outcomes once the flow is quiet (trainer README, data-triggered runs; issue 13).
        registry = _service_url(stack, "registry")
        trainer = _service_url(stack, "trainer")
        deployments = _wait(
            "a model promoted to production",
            lambda: [
                d for d in (_json(f"{registry}/v1/deployments") or []) if d["model_name"] == MODEL
            ],
            600,
            stack,
            explain=lambda: _learning_summary(stack),
        )
        version = deployments[0]["version"]
        promoted_after = time.monotonic() - started
        print("\n" + _learning_summary(stack))
        runs = _json(f"{trainer}/v1/runs") or []
        assert runs and all(r["trigger"] == "data" for r in runs), runs
        [run] = [r for r in runs if r["version"] == version]
        assert run["status"] == "completed", run
        headline = run["headline"]
        # Near 0.5: the replay's rules have no edge, which is what an honest evaluation says.
        print(
            f"honest test ROC-AUC on real EURUSD ({headline['test_rows']} test rows, "
            f"version {version}): {headline['roc_auc']:.3f}; "
            f"Brier {headline['brier']:.3f}; trading recommendation: {headline['recommendation']}"
        )
        _wait(
            "the status line to show the production model",
            # "production playbook v1_0_0, trade_success <version>": one entry per model
            lambda: any(
                f"{MODEL} {version}" in line.partition(" production ")[2] for line in stack.lines
            ),
            60,
            stack,
        )
        progress = _replay_progress(stack_dir)
        if not progress["finished"]:  # promoted before the replay's last outcome: wait
            _wait(
                "the replay to finish",
                lambda: _replay_progress(stack_dir)["finished"],
                300,
                stack,
            )
            progress = _replay_progress(stack_dir)
        counters = progress["counters"]
        signals = counters["signals"]
        assert signals == counters["planned_signals"] == counters["scored"], counters
        assert signals == counters["outcomes"] > 300, counters
        assert counters["score_failures"] == 0, counters
        assert counters["pngs"] == 2 * signals

        # The counts agree end to end: the trainer holds every signal with its outcome.
        _wait(
            "the trainer to hold every signal with its outcome",
            lambda: (_json(f"{trainer}/v1/stats") or {}).get("signals_with_outcome", 0) >= signals,
            180,
            stack,
        )
        stats = _json(f"{trainer}/v1/stats")
        assert stats["signals"] == stats["outcomes"] == signals, stats

        # What the newcomer is told to look at shows the replayed trades.
        _wait(
            f"memory to hold the {2 * signals} charts",
            lambda: _image_records(stack) >= 2 * signals,
            420,
            stack,
        )
        assert _image_records(stack) == 2 * signals
        memory = _service_url(stack, "memory")
        search = httpx.post(
            f"{memory}/v1/search", json={"text": "breakout long EURUSD", "k": 5}, timeout=60
        )
        assert search.status_code == 200, search.text
        assert search.json()["results"], search.json()
        _wait(
            "every trade in the labeling queue",
            lambda: _labeling_items(stack) >= signals,
            120,
            stack,
        )
        assert _labeling_items(stack) == signals
        status = _json(f"{registry}/v1/status")
        assert isinstance(status, dict)
        # A later data-triggered run (the quiet rule) may have replaced the first version.
        assert any(p["model_name"] == MODEL for p in status["production"]), status
        registered = {v["version"] for v in _json(f"{registry}/v1/models/{MODEL}/versions") or []}

        # The trading engine's view: a real score from that version through the gateway.
        event = await _last_signal(nats_url)
        gateway = f"127.0.0.1:{stack.env['HINDSIGHT_GATEWAY_GRPC_PORT']}"
        async with grpc.aio.insecure_channel(gateway) as channel:
            answer = await scoring_pb2_grpc.ScoringStub(channel).Score(
                scoring_pb2.ScoreRequest(
                    signal_id="first-run-check",
                    symbol=str(event["symbol"]),
                    timeframe=str(event["timeframe"]),
                    side=str(event["side"]),
                    features={
                        k: float("nan") if v is None else float(v)
                        for k, v in event["features"].items()
                    },
                ),
                timeout=10,
            )
        assert not answer.fallback, answer.fallback_reason
        assert answer.model_version in registered and 0.0 <= answer.p_success <= 1.0

        # The model family (issue 16), nobody asking: the Back-Labeler labelled every
        # replayed signal, the trainer trained `playbook` on those labels (data trigger:
        # labels went quiet), the registry promoted it on the dev gates, and the gateway's
        # Predict answers every head as the release's member ONNX files do.
        deadline = time.monotonic() + 180
        while (labeled := (await _subject_counts(nats_url)).get("signal.labeled", 0)) < signals:
            assert time.monotonic() < deadline, f"signal.labeled {labeled} of {signals} signals"
            await asyncio.sleep(2.0)
        assert labeled == signals
        family = _wait(
            f"the {FAMILY} family promoted to production",
            lambda: [
                d for d in (_json(f"{registry}/v1/deployments") or []) if d["model_name"] == FAMILY
            ],
            360,
            stack,
            explain=lambda: _learning_summary(stack),
        )[0]
        family_runs = [r for r in _json(f"{trainer}/v1/runs") or [] if r["model_name"] == FAMILY]
        assert family_runs and all(r["trigger"] == "data" for r in family_runs), family_runs
        release = stack_dir / "artifacts" / family["artifact_uri"]
        cluster = "M"
        features = {
            k: float("nan") if v is None else float(v) for k, v in event["features"].items()
        }
        card, expected = _family_expected(release, features, cluster)
        assert card.version == family["version"]
        predict = scoring_pb2.PredictRequest(
            signal_id="first-run-family-check",
            symbol=str(event["symbol"]),
            timeframe=str(event["timeframe"]),
            side=str(event["side"]),
            features=features,
            liquidity_cluster=cluster,
        )

        # The scorer loads the release on model.deployed; until then the gateway would answer
        # every head with its fallback (and log that answer): call once it is the default.
        _wait(
            f"the scorer to serve {FAMILY} {card.version}",
            lambda: any(
                r["family"] == FAMILY and r["version"] == card.version and r["default"]
                for r in _json(f"{_service_url(stack, 'scorer')}/v1/families") or []
            ),
            120,
            stack,
        )
        async with grpc.aio.insecure_channel(gateway) as channel:
            predicted_answer = await scoring_pb2_grpc.ScoringStub(channel).Predict(
                predict, timeout=10
            )
        assert not predicted_answer.fallback, predicted_answer
        assert predicted_answer.family_version == card.version
        assert predicted_answer.family == FAMILY
        assert set(predicted_answer.heads) == set(expected)
        for head, (member, member_version, value) in expected.items():
            got_head = predicted_answer.heads[head]
            assert not got_head.fallback, (head, got_head.fallback_reason)
            assert (got_head.member, got_head.model_version) == (member, member_version), head
            assert abs(got_head.value - value) <= 1e-5, (head, got_head.value, value)
        print(
            f"family {FAMILY} {card.version} (run {family_runs[0]['run_id'][:8]}, "
            f"{card.metrics['rows']['total']} labelled signals): "
            + ", ".join(f"{h}={v:.5f} ({m} {mv})" for h, (m, mv, v) in expected.items())
        )

        # Settled: every chart and document is a memory record (embedding.created all in),
        # and the gateway's prediction.logged for every replayed signal plus the check call
        # above is in the stream (the gateway lingers up to LOG_LINGER_MS before it
        # publishes, so reading the counts at once could miss the last one).
        async def settled() -> dict[str, int] | None:
            counts = await _subject_counts(nats_url)
            docs = counts.get("png.created", 0) + counts.get("json.created", 0)
            held = _held(stack)
            return (
                counts
                if held["memory_records"] == docs <= counts.get("embedding.created", 0)
                and counts.get("prediction.logged", 0) >= signals + 2
                else None
            )

        deadline = time.monotonic() + 300
        while (counts := await settled()) is None:
            assert time.monotonic() < deadline, (await _subject_counts(nats_url), _held(stack))
            await asyncio.sleep(2.0)
        before = {k: counts.get(k, 0) for k in SETTLED_SUBJECTS}
        assert before["signal.features"] == signals and before["png.created"] == 2 * signals
        # One per Score call (the replay's and the check above) and one for the Predict.
        assert before["prediction.logged"] == signals + 2, before
        held_before = _held(stack)
        print(
            f"first run: {signals} signals; promoted {version} "
            f"{promoted_after:.0f} s after `hindsight up`; {before}; {held_before}"
        )

        status_cli = stack.cli("status")
        assert status_cli.returncode == 0, status_cli.stdout + status_cli.stderr
        assert "nats" in status_cli.stdout and "postgres" in status_cli.stdout
        pids = recorded_pids(stack_dir)
        # supervisor, nats, postgres and every installed service (the replay has finished)
        assert len(pids) == 3 + len(discover_services()), (stack_dir / "stack.json").read_text()
        stack.proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert stack.wait(timeout=180) == 0, stack.output
    finally:
        if stack.proc.poll() is None:
            stack.proc.kill()
            stack.proc.wait()
    assert "Hindsight stopped." in stack.output
    assert_nothing_left(stack, pids)
    assert stack.cli("status").returncode == 3

    # The second `make run`: the data is kept, the replay says it already finished, nothing
    # is published again.
    again = start_stack(stack_dir, ports, stack.env)
    try:
        assert "Initialised a new PostgreSQL cluster" not in again.output
        assert pg_version.stat().st_mtime_ns == created
        conn = await asyncpg.connect(again.endpoint(r"postgresql://\S+"))
        try:
            assert await conn.fetchval("SELECT note FROM kept") == "from run 1"
        finally:
            await conn.close()
        replay_log = stack_dir / "logs" / "replay.log"
        _wait(
            "the replay to say it already finished",
            lambda: "already finished" in replay_log.read_text(errors="replace"),
            120,
            again,
        )
        time.sleep(15)  # let every service settle: redeliveries would show up here
        after = await _subject_counts(again.endpoint(r"nats://127\.0\.0\.1:\d+"))
        assert {k: after.get(k, 0) for k in SETTLED_SUBJECTS} == before
        assert _held(again) == held_before
        pids = recorded_pids(stack_dir)
        down = again.cli("down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert "Hindsight stopped." in down.stdout
        assert again.wait(timeout=180) == 0, again.output
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
            again.proc.wait()
    assert_nothing_left(again, pids)
