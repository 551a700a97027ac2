"""The floor under the Score path: CPU per call of bare grpc aio on this machine.

An echo ``Scoring`` server (answers a fixed ``ScoreResponse``), a proxy in front of it (a
server that calls the echo server, as the gateway calls the scorer), and an open-loop aio
client, each its own process, at 100, 500 and 1,000 calls/s. Printed: the CPU (user +
system) each process spent per call. Compare with the soak's "CPU per call in the baseline
phase" (the real gateway and scorer, ``make soak``): the rest is what Hindsight adds. At
1,000 calls/s the three bare processes alone need about 1.4 cores of these 2 (issue 12).

Run with ``pytest -m bench bench/test_bench_grpc_floor.py -s``; asserts nothing about timings.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from hindsight.devstack.ports import free_port
from hindsight.devstack.soak import process_cpu_s
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.bench

RATES = (100.0, 500.0, 1000.0)
SECONDS = 10.0


class _Echo(scoring_pb2_grpc.ScoringServicer):
    async def Score(  # noqa: N802 (the proto's name)
        self, request: scoring_pb2.ScoreRequest, context: object
    ) -> scoring_pb2.ScoreResponse:
        return scoring_pb2.ScoreResponse(
            signal_id=request.signal_id, p_success=0.5, model_version="v1"
        )


class _Proxy(scoring_pb2_grpc.ScoringServicer):
    def __init__(self, target: str) -> None:
        self.stub = scoring_pb2_grpc.ScoringStub(grpc.aio.insecure_channel(target))

    async def Score(  # noqa: N802
        self, request: scoring_pb2.ScoreRequest, context: object
    ) -> scoring_pb2.ScoreResponse:
        answer: scoring_pb2.ScoreResponse = await self.stub.Score(request, timeout=0.1)
        return answer


async def _serve(port: int, upstream: str | None) -> None:
    server = grpc.aio.server()
    servicer = _Echo() if upstream is None else _Proxy(upstream)
    scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _open_loop(target: str, rate: float, seconds: float) -> tuple[int, int]:
    """Calls at ``rate`` for ``seconds``; returns (calls, errors)."""
    errors = 0
    request = scoring_pb2.ScoreRequest(
        signal_id="floor", side="buy", features={f"f{i}": 0.5 for i in range(12)}
    )
    async with grpc.aio.insecure_channel(target) as channel:
        stub = scoring_pb2_grpc.ScoringStub(channel)
        for _ in range(50):  # the servers may still be binding
            try:
                await stub.Score(request, timeout=1.0)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        tasks: set[asyncio.Task[None]] = set()

        async def call() -> None:
            nonlocal errors
            try:
                await stub.Score(request, timeout=1.0)
            except grpc.aio.AioRpcError:
                errors += 1

        start, sent = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            due = int((time.monotonic() - start) * rate) + 1
            while sent < due:
                task = asyncio.create_task(call())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(max(0.0, min(0.05, start + sent / rate - time.monotonic())))
        if tasks:
            await asyncio.wait(tasks)
    return sent, errors


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_bench_bare_grpc_aio_cpu_per_call() -> None:
    echo_port, proxy_port = free_port(), free_port()
    me = [sys.executable, __file__, "serve"]
    echo = subprocess.Popen([*me, str(echo_port)])
    proxy = subprocess.Popen([*me, str(proxy_port), f"127.0.0.1:{echo_port}"])
    try:
        print(f"\nbare grpc aio, CPU per call (user + system), {SECONDS:g} s per rate:")
        print(f"{'calls/s':>8}{'echo ms':>10}{'proxy ms':>10}{'client ms':>11}{'cores':>7}")
        # Warm: the servers' imports and first calls are start-up, not per-call cost.
        asyncio.run(_open_loop(f"127.0.0.1:{proxy_port}", 50.0, 1.0))
        for rate in RATES:
            before = (process_cpu_s(echo.pid), process_cpu_s(proxy.pid), _own_cpu_s())
            calls, errors = asyncio.run(_open_loop(f"127.0.0.1:{proxy_port}", rate, SECONDS))
            after = (process_cpu_s(echo.pid), process_cpu_s(proxy.pid), _own_cpu_s())
            spent = [(b - a) * 1000 / calls for a, b in zip(before, after, strict=True)]
            cores = sum(spent) * rate / 1000
            print(
                f"{rate:>8g}{spent[0]:>10.2f}{spent[1]:>10.2f}{spent[2]:>11.2f}{cores:>7.2f}"
                + (f"  ({errors} errors)" if errors else "")
            )
            assert calls > 0
        print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    finally:
        for proc in (proxy, echo):
            proc.kill()
            proc.wait(10)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    asyncio.run(_serve(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
