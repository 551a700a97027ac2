"""The Score path under load and faults: the whole stack, an open-loop client, kill -9.

A private nats-server and PostgreSQL (so they can be killed), every service of the dev
stack as a process (the learning side at a lower CPU priority, as ``hindsight up`` starts
it), a model deployed to the scorer, and a light learning-side workload (signals,
outcomes, charts, documents from a plain nats-py publisher). Open-loop clients
(:mod:`hindsight.devstack.loadgen`, stubs compiled from the proto) call gateway ``Score``
at ``rate`` calls/s with a deadline while, phase after phase, one part is killed with
SIGKILL and restarted. Each phase's calls are counted: real scores, fallbacks by reason,
gRPC errors by code, answers later than the deadline, latency percentiles, and the time
until the killed part was back (``recovery_s``).

Used by ``tests/integration/test_soak.py`` (reduced length) and ``bench/test_bench_soak.py``
(full length, printed).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .loadgen import compile_stubs
from .ports import free_port
from .servers import NatsServer, PostgresServer, RunningServer, start_server
from .testing import ServiceProcesses

__all__ = ["TARGETS", "CallStats", "SoakPlan", "SoakReport", "format_report", "run_soak"]

# What is killed, in this order (issue 12).
TARGETS = ("scorer", "registry", "nats", "postgres", "trainer", "embedder", "memory", "market")
TRADING = ("scorer", "gateway")
LEARNING = ("registry", "trainer", "embedder", "memory", "labeling", "market")
LEARNING_NICE = 10
TOKEN = "soak-token"


@dataclass(frozen=True)
class SoakPlan:
    """How hard and how long."""

    rate: float = 1000.0
    """Calls per second, all clients together."""
    phase_s: float = 15.0
    """Length of each phase (the first one has no fault)."""
    down_s: float = 2.0
    """How long a killed part stays down before it is restarted."""
    deadline_ms: float = 100.0
    clients: int = 2
    """Client processes sharing ``rate`` (one Python client tops out near 600 calls/s)."""
    targets: tuple[str, ...] = TARGETS
    workload: bool = True
    """Publish signals, outcomes, charts and documents while the load runs."""
    throughput_s: float = 0.0
    """When > 0, first measure closed-loop throughput (gateway, then the scorer alone) for
    this long each, with the whole stack and its workload running."""
    throughput_concurrency: int = 16


@dataclass
class CallStats:
    """The calls of one phase."""

    calls: int = 0
    scores: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    late: int = 0
    """Answers (OK status) that arrived after the deadline."""
    late_in_gateway: int = 0
    """Of those, answers whose own ``prediction_time_ms`` was already over the deadline (the
    time went inside the gateway, not between it and the client)."""
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    max_send_lag_ms: float = 0.0
    """How far behind its schedule the client sent a call (the client's own lag)."""


@dataclass
class Phase:
    name: str
    start: float
    end: float = 0.0
    recovery_s: float | None = None
    stats: CallStats = field(default_factory=CallStats)


@dataclass
class SoakReport:
    plan: SoakPlan
    phases: list[Phase]
    total: CallStats
    log_dir: Path
    throughput: dict[str, tuple[float, CallStats]] = field(default_factory=dict)
    """Per target (``gateway``, ``scorer``): answers/s within the deadline, and the calls."""
    machine: list[str] = field(default_factory=list)
    """What used the CPU while the load ran (every process of the machine, the busiest first),
    and the load average: a miss is read against what else the 2 cores were doing."""
    cpu_per_call_ms: dict[str, float] = field(default_factory=dict)
    """CPU time (user + system) the gateway and the scorer spent per call in the baseline
    phase (no fault), ms; ``bench/test_bench_grpc_floor.py`` gives bare grpc aio's."""

    @property
    def errors(self) -> int:
        return sum(self.total.errors.values())


Row = tuple[float, float, float, str, str, float, str]
"""One call: scheduled, send lag, latency (s), code, fallback flag, the gateway's ms, reason."""


def _stats(rows: list[Row], deadline_s: float) -> CallStats:
    stats = CallStats(calls=len(rows))
    latencies = []
    for _, lag, latency, code, fallback, server_ms, reason in rows:
        stats.max_send_lag_ms = max(stats.max_send_lag_ms, lag * 1000)
        if code != "OK":
            stats.errors[code] += 1
            continue
        latencies.append(latency)
        if latency > deadline_s:
            stats.late += 1
            if server_ms > deadline_s * 1000:
                stats.late_in_gateway += 1
        if fallback == "1":
            stats.fallbacks[reason or "?"] += 1
        else:
            stats.scores += 1
    if latencies:
        ms = np.asarray(latencies) * 1000
        stats.p50_ms = float(np.percentile(ms, 50))
        stats.p99_ms = float(np.percentile(ms, 99))
        stats.max_ms = float(ms.max())
    return stats


def _read_rows(paths: list[Path]) -> list[Row]:
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            if not line:
                continue
            scheduled, lag, latency, code, fallback, server_ms, reason = line.split(",", 6)
            rows.append(
                (
                    float(scheduled),
                    float(lag),
                    float(latency),
                    code,
                    fallback,
                    float(server_ms or "nan"),
                    reason,
                )
            )
    rows.sort()
    return rows


def format_report(report: SoakReport) -> str:
    """A table: one line per phase, then the whole run."""
    plan = report.plan
    head = (
        f"soak: {plan.rate:g} calls/s open loop, deadline {plan.deadline_ms:g} ms, "
        f"{plan.clients} client processes, phases of {plan.phase_s:g} s\n"
        f"{'phase':<10}{'calls':>8}{'scores':>8}{'fallbk':>8}{'errors':>7}{'late':>6}"
        f"{'in gw':>6}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'recov s':>9}  fallbacks / errors\n"
    )
    lines = []
    for phase in [*report.phases, Phase("TOTAL", 0.0, stats=report.total)]:
        s = phase.stats
        recovery = "" if phase.recovery_s is None else f"{phase.recovery_s:.1f}"
        detail = ", ".join(f"{k} {v}" for k, v in sorted((s.fallbacks + s.errors).items()))
        lines.append(
            f"{phase.name:<10}{s.calls:>8}{s.scores:>8}{sum(s.fallbacks.values()):>8}"
            f"{sum(s.errors.values()):>7}{s.late:>6}{s.late_in_gateway:>6}"
            f"{s.p50_ms:>8.2f}{s.p99_ms:>8.2f}"
            f"{s.max_ms:>8.1f}{recovery:>9}  {detail}"
        )
    lag = max((p.stats.max_send_lag_ms for p in report.phases), default=0.0)
    text = (
        head
        + "\n".join(lines)
        + f"\nclient send lag max {lag:.1f} ms; 'in gw': late answers whose own "
        "prediction_time_ms was over the deadline (the rest lost their time between the "
        "gateway's handler and the client)\n"
    )
    for target, (per_s, s) in report.throughput.items():
        text += (
            f"closed loop ({plan.throughput_concurrency} in flight) -> {target}: {per_s:,.0f} "
            f"real scores/s within {plan.deadline_ms:g} ms (p50 {s.p50_ms:.2f} ms, p99 "
            f"{s.p99_ms:.2f} ms; {sum(s.fallbacks.values())} fallbacks, "
            f"{sum(s.errors.values())} errors, {s.late} late of {s.calls})\n"
        )
    if report.cpu_per_call_ms:
        text += (
            "CPU per call in the baseline phase: "
            + ", ".join(f"{name} {ms:.2f} ms" for name, ms in report.cpu_per_call_ms.items())
            + "\n"
        )
    if report.machine:
        text += "CPU while the load ran (% of one core; nice):\n" + "\n".join(report.machine) + "\n"
    return text


# --- what else ran on the machine ---------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(stat: str) -> tuple[str, int, float]:
    """(command name, nice, CPU seconds user + system) from a ``/proc/<pid>/stat`` line."""
    name, _, rest = stat.partition(" (")[2].rpartition(") ")
    fields = rest.split()
    return name, int(fields[16]), (int(fields[11]) + int(fields[12])) / _TICK


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    return process_cpu(Path(f"/proc/{pid}/stat").read_text())[2]


def _cpu_snapshot() -> dict[int, tuple[str, int, float]]:
    """pid -> (command, nice, CPU seconds so far) for every process that can be read."""
    out: dict[int, tuple[str, int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, nice, cpu = process_cpu((entry / "stat").read_text())
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # "python -m hindsight.gateway" says more than "python".
        label = next((w for w in cmdline.split() if w.startswith("hindsight.")), "") or (
            "pytest" if "pytest" in cmdline else name
        )
        out[int(entry.name)] = (label[:40], nice, cpu)
    return out


def _cpu_use(
    before: dict[int, tuple[str, int, float]], seconds: float, *, top: int = 12
) -> list[str]:
    """The busiest processes since ``before`` (processes that started since count from 0)."""
    after = _cpu_snapshot()
    use = []
    for pid, (label, nice, cpu) in after.items():
        spent = cpu - before.get(pid, (label, nice, 0.0))[2]
        if spent > 0:
            use.append((spent, pid, label, nice))
    use.sort(reverse=True)
    lines = [
        f"  {spent / seconds * 100:5.1f}%  {label:<40} pid {pid:<7} nice {nice}"
        for spent, pid, label, nice in use[:top]
    ]
    rest = sum(spent for spent, *_ in use[top:])
    lines.append(f"  {rest / seconds * 100:5.1f}%  ({len(use) - top} other processes)")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines.append(f"  load average {load}; {os.cpu_count()} cores")
    return lines


# --- the stack ---------------------------------------------------------------------------


@dataclass
class _Stack:
    root: Path
    nats: NatsServer
    postgres: PostgresServer
    running: dict[str, RunningServer]
    services: ServiceProcesses

    def kill_server(self, name: str) -> None:
        proc = self.running.pop(name).proc
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def start_server(self, name: str) -> None:
        server = self.nats if name == "nats" else self.postgres
        deadline = time.monotonic() + 60
        while True:  # a killed postmaster's backends may hold shared memory a moment longer
            try:
                self.running[name] = start_server(server)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def start_service(self, name: str) -> None:
        self.services.start(
            name,
            ready_path="/readyz",
            timeout=300,
            nice=LEARNING_NICE if name in LEARNING else 0,
        )

    def all_ready(self) -> bool:
        for name in self.services.procs:
            try:
                ok = httpx.get(f"{self.services.url(name)}/readyz", timeout=1.0).status_code
            except httpx.HTTPError:
                return False
            if ok != 200:
                return False
        return True

    def stop(self) -> None:
        self.services.stop_all()
        for running in reversed(list(self.running.values())):
            with suppress(Exception):
                running.stop()


@contextmanager
def _stack(
    root: Path, deployment: Mapping[str, Any], extra_env: Mapping[str, str]
) -> Iterator[_Stack]:
    root.mkdir(parents=True, exist_ok=True)
    nats = NatsServer(
        store_dir=root / "nats",
        port=free_port(),
        monitor_port=free_port(),
        log_file=root / "logs" / "nats.log",
        server_name="hindsight-soak",
        port_env=None,
        monitor_port_env=None,
    )
    postgres = PostgresServer(
        data_dir=root / "postgres",
        port=free_port(),
        log_file=root / "logs" / "postgres.log",
        fsync=False,
        port_env=None,
        database="soak",
    )
    running = {"nats": start_server(nats), "postgres": start_server(postgres)}
    services = ServiceProcesses.platform(
        root,
        nats_url=nats.url,
        database_url=postgres.url,
        admin_token=TOKEN,
        extra_env={
            "HINDSIGHT_LOG_LEVEL": "WARNING",
            "HINDSIGHT_EMBEDDER_CLIP_ARCH": "hindsight-tiny-clip",
            "HINDSIGHT_TRAINER_AUTO_TRAIN_OUTCOMES": "0",
            "HINDSIGHT_LABELING_PASSWORD": "soak-password",
            **extra_env,
        },
    )
    stack = _Stack(root, nats, postgres, running, services)
    try:
        asyncio.run(_deploy(nats.url, deployment))
        for name in (
            "registry",
            "trainer",
            "scorer",
            "gateway",
            "embedder",
            "memory",
            "labeling",
            "market",
        ):
            _say(f"starting {name}")
            stack.start_service(name)
        yield stack
    finally:
        stack.stop()


async def _deploy(nats_url: str, deployment: Mapping[str, Any]) -> None:
    from hindsight.common.broker import create_broker, ensure_streams, publish_event
    from hindsight.common.events import ModelDeployed
    from hindsight.common.settings import BaseServiceSettings

    settings = BaseServiceSettings(nats_url=nats_url)
    broker = create_broker(settings, client_name="soak-deploy")
    await broker.connect()
    try:
        await ensure_streams(broker, settings)
        await publish_event(broker, ModelDeployed.create(source="soak", **deployment))
    finally:
        await broker.stop()


# --- the learning-side workload ------------------------------------------------------------


def _png_bytes(seed: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _event(subject: str, **fields: Any) -> bytes:
    body = {
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "soak",
        **fields,
    }
    return json.dumps(body).encode()


async def _workload(
    nats_url: str, image_dir: Path, features: list[str], stop: threading.Event
) -> Counter[str]:
    """Signals and outcomes (5/s), a chart and a trade document (1/s), from plain nats-py;
    NATS being down only skips a beat."""
    import nats

    sent: Counter[str] = Counter()
    client = await nats.connect(
        nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2
    )
    js = client.jetstream(timeout=1.0)
    rng = np.random.default_rng(7)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            sid = f"soak-sig-{i}"
            ts = datetime.now(UTC).isoformat()
            msgs = [
                (
                    "signal.features",
                    sid,
                    _event(
                        "signal.features",
                        signal_id=sid,
                        symbol="EURUSD",
                        timeframe="1h",
                        side="buy",
                        ts=ts,
                        features={n: float(rng.normal()) for n in features},
                        feature_schema_version="soak-v1",
                    ),
                ),
                (
                    "signal.outcome",
                    sid,
                    _event(
                        "signal.outcome",
                        signal_id=sid,
                        closed_at=ts,
                        realised_r=float(rng.normal()),
                        result="win" if rng.random() < 0.5 else "loss",
                    ),
                ),
            ]
            if i % 5 == 0:
                path = image_dir / f"soak-{i}.png"
                path.write_bytes(_png_bytes(i))
                msgs.append(
                    (
                        "png.created",
                        str(path),
                        _event(
                            "png.created",
                            file_path=str(path),
                            run_id="soak",
                            trade_id=sid,
                            symbol="EURUSD",
                            timeframe="1h",
                        ),
                    )
                )
                payload = {"trade_id": sid, "note": f"soak trade {i}", "side": "buy"}
                msgs.append(
                    (
                        "json.created",
                        f"doc-{sid}",
                        _event(
                            "json.created",
                            doc_type="trade_meta",
                            doc_id=f"doc-{sid}",
                            payload=payload,
                            run_id="soak",
                            trade_id=sid,
                        ),
                    )
                )
            for subject, key, data in msgs:
                try:
                    await js.publish(subject, data, headers={"Nats-Msg-Id": f"{subject}:{key}"})
                    sent[subject] += 1
                except Exception:
                    sent["skipped"] += 1
            await asyncio.sleep(0.2)
    finally:
        with suppress(Exception):
            await client.close()
    return sent


# --- the run -------------------------------------------------------------------------------


def _start_clients(
    stack: _Stack,
    plan: SoakPlan,
    features: Mapping[str, float],
    start: float,
    *,
    target: str = "gateway",
    closed_loop_s: float = 0.0,
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    root = stack.root
    stubs = compile_stubs(Path(__file__).parents[5] / "protos", root / "stubs")
    features_file = root / "features.json"
    features_file.write_text(json.dumps(dict(features)))
    clients = []
    for n in range(plan.clients):
        out = root / f"calls-{target}-{'closed' if closed_loop_s else 'open'}-{n}.csv"
        argv = [
            sys.executable,
            "-m",
            "hindsight.devstack.loadgen",
            "--target", f"127.0.0.1:{stack.services.ports[target + '_grpc']}",
            "--stubs", str(stubs),
            "--features", str(features_file),
            *(
                ["--concurrency", str(plan.throughput_concurrency // plan.clients)]
                + ["--duration", str(closed_loop_s)]
                if closed_loop_s
                else ["--rate", str(plan.rate / plan.clients)]
            ),
            "--start", f"{start + n / plan.rate:.6f}",
            "--deadline-ms", str(plan.deadline_ms),
            "--prefix", f"soak{n}",
            "--out", str(out),
        ]  # fmt: skip
        log = open(root / "logs" / f"loadgen-{n}.log", "wb")
        clients.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT), out))
        log.close()
    return clients


def _say(text: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", flush=True)


def _wait(what: str, probe: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if probe():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"soak: {what} did not happen within {timeout:g} s")


def _fault(stack: _Stack, target: str, down_s: float, features: Mapping[str, float]) -> float:
    """Kill ``target`` with SIGKILL, restart it after ``down_s``; seconds until the whole
    stack answers ``/readyz`` again (the part included) and the gateway serves real scores
    (its breaker closed again), so that no phase inherits the previous one's fault."""
    killed = time.monotonic()
    if target in ("nats", "postgres"):
        stack.kill_server(target)
        time.sleep(down_s)
        stack.start_server(target)
    else:
        stack.services.stop(target, sig=signal.SIGKILL, timeout=10)
        time.sleep(down_s)
        stack.start_service(target)
    _wait(f"every service ready after killing {target}", stack.all_ready, 120)
    _wait(f"real scores after killing {target}", lambda: _real_score(stack, features), 60)
    return time.monotonic() - killed


def run_soak(
    root: Path,
    plan: SoakPlan,
    *,
    deployment: Mapping[str, Any],
    features: Mapping[str, float],
    extra_env: Mapping[str, str] | None = None,
) -> SoakReport:
    """Run the soak; the report has per-phase call counts and recovery times."""
    with _stack(root, deployment, extra_env or {}) as stack:
        _wait("the gateway to serve real scores", lambda: _real_score(stack, features), 120)
        stop = threading.Event()
        sent: Counter[str] = Counter()

        def workload() -> None:
            # The upstream tools' share of the machine: niced like the learning side (Linux
            # applies a thread id's priority to that thread only).
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LEARNING_NICE)
            sent.update(
                asyncio.run(_workload(stack.nats.url, root / "images", list(features), stop))
            )

        feeder = threading.Thread(target=workload, name="soak-workload", daemon=True)
        if plan.workload:
            feeder.start()
        throughput = {}
        for target in ("gateway", "scorer") if plan.throughput_s > 0 else ():
            throughput[target] = _throughput(stack, plan, features, target)
            _say(f"closed loop -> {target}: {throughput[target][0]:,.0f} real scores/s")
        start = time.time() + 3.0
        clients = _start_clients(stack, plan, features, start)
        phases: list[Phase] = []
        try:
            time.sleep(max(0.0, start - time.time()))
            cpu_before, cpu_at = _cpu_snapshot(), time.monotonic()
            phases.append(Phase("baseline", time.time()))
            trading = {name: stack.services.procs[name].pid for name in TRADING}
            trading_before = {name: process_cpu_s(pid) for name, pid in trading.items()}
            time.sleep(plan.phase_s)
            cpu_per_call_ms = {
                name: (process_cpu_s(pid) - trading_before[name])
                / (plan.rate * plan.phase_s)
                * 1000
                for name, pid in trading.items()
            }
            for target in plan.targets:
                phases[-1].end = time.time()
                phase = Phase(target, time.time())
                phases.append(phase)
                _say(f"kill -9 {target}")
                phase.recovery_s = _fault(stack, target, plan.down_s, features)
                _say(f"{target}: every service ready again after {phase.recovery_s:.1f} s")
                time.sleep(max(0.0, phase.start + plan.phase_s - time.time()))
            phases[-1].end = time.time()
            machine = _cpu_use(cpu_before, time.monotonic() - cpu_at)
        finally:
            for proc, _ in clients:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc, _ in clients:
                proc.wait(60)
            stop.set()
            if plan.workload:
                feeder.join(30)
        for proc, _ in clients:
            if proc.returncode != 0:
                raise AssertionError(f"a load client failed ({proc.returncode}); see logs")
        rows = _read_rows([out for _, out in clients])
        deadline_s = plan.deadline_ms / 1000
        for phase in phases:
            phase.stats = _stats([r for r in rows if phase.start <= r[0] < phase.end], deadline_s)
        report = SoakReport(
            plan,
            phases,
            _stats(rows, deadline_s),
            root / "logs",
            throughput,
            machine,
            cpu_per_call_ms,
        )
        (root / "workload.json").write_text(json.dumps(dict(sent)))
        return report


def _throughput(
    stack: _Stack, plan: SoakPlan, features: Mapping[str, float], target: str
) -> tuple[float, CallStats]:
    """Closed-loop calls to ``target`` for ``plan.throughput_s``: real scores per second
    answered within the deadline."""
    start = time.time() + 3.0
    clients = _start_clients(
        stack, plan, features, start, target=target, closed_loop_s=plan.throughput_s
    )
    for proc, _ in clients:
        proc.wait(plan.throughput_s + 120)
    rows = _read_rows([out for _, out in clients])
    stats = _stats(rows, plan.deadline_ms / 1000)
    within = sum(
        1 for r in rows if r[3] == "OK" and r[4] == "0" and r[2] <= plan.deadline_ms / 1000
    )
    return within / plan.throughput_s, stats


def _real_score(stack: _Stack, features: Mapping[str, float]) -> bool:
    import grpc

    from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

    target = f"127.0.0.1:{stack.services.ports['gateway_grpc']}"
    with grpc.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        try:
            answer = stub.Score(
                scoring_pb2.ScoreRequest(signal_id="soak-probe", side="buy", features=features),
                timeout=2.0,
            )
        except grpc.RpcError:
            return False
    return not answer.fallback
