"""An open-loop Score client, as the trading engine calls the gateway.

Run as a script (``python -m hindsight.devstack.loadgen``): it imports nothing of
Hindsight's but the stubs it is pointed at, which :func:`compile_stubs` builds from
``protos/`` with ``grpc_tools.protoc`` (an outside client's view of the contract).

Open loop: call ``i`` is sent at ``start + i / rate`` whether or not earlier calls have
answered, so a stalled server meets the full rate when it comes back, as it would in
trading. Every call gets the deadline; the outcome of each is written as one CSV line:
``scheduled,send_lag_s,latency_s,code,fallback,server_ms,reason`` (``scheduled`` in epoch
seconds, ``code`` ``OK`` or the gRPC status name, ``server_ms`` the answer's own
``prediction_time_ms``: the gateway's time, so that a late answer shows whether the time
went inside the gateway or between it and the client). It runs for ``--duration``
seconds, or until SIGTERM / SIGINT when that is 0, then waits for the calls in flight and
writes the file. With ``--concurrency N`` it runs closed loop instead (N calls always in flight, for
``--duration``): the throughput a server sustains, not its behaviour at a given rate.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["compile_stubs"]

PROTO = Path("hindsight") / "scoring" / "v1" / "scoring.proto"


def compile_stubs(protos_root: Path, out_dir: Path) -> Path:
    """Compile ``scoring.proto`` into top-level modules ``scoring_pb2`` / ``scoring_pb2_grpc``
    under ``out_dir`` (the package path is dropped so they cannot shadow Hindsight's own)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scoring.proto").write_bytes((protos_root / PROTO).read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{out_dir}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(out_dir / "scoring.proto"),
        ],
        check=True,
        capture_output=True,
    )
    return out_dir


async def _run(args: argparse.Namespace) -> None:
    import grpc

    sys.path.insert(0, args.stubs)
    pb2: Any = importlib.import_module("scoring_pb2")
    pb2_grpc: Any = importlib.import_module("scoring_pb2_grpc")
    features = json.loads(Path(args.features).read_text())
    deadline = args.deadline_ms / 1000
    total = int(args.rate * args.duration) if args.duration > 0 else sys.maxsize
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    lines: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    async with grpc.aio.insecure_channel(args.target) as channel:
        stub = pb2_grpc.ScoringStub(channel)
        await stub.Score(
            pb2.ScoreRequest(signal_id="warm", side="buy", features=features), timeout=5.0
        )

        async def call(i: int, scheduled: float) -> None:
            request = pb2.ScoreRequest(
                signal_id=f"{args.prefix}-{i}", side="buy", features=features
            )
            sent = time.time()
            try:
                answer = await stub.Score(request, timeout=deadline)
                done = time.time()
                outcome = (
                    f"OK,{int(answer.fallback)},{answer.prediction_time_ms:.3f},"
                    f"{answer.fallback_reason}"
                )
            except grpc.aio.AioRpcError as exc:
                done = time.time()
                outcome = f"{exc.code().name},,,"
            lines.append(f"{scheduled:.4f},{sent - scheduled:.4f},{done - sent:.5f},{outcome}")

        if args.concurrency > 0:  # closed loop: each worker calls again once answered
            counter = iter(range(sys.maxsize))

            async def worker() -> None:
                while not stop.is_set() and time.time() < args.start + args.duration:
                    await call(next(counter), time.time())

            await asyncio.sleep(max(0.0, args.start - time.time()))
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
            total = 0
        i = 0
        while i < total and not stop.is_set():
            now = time.time()
            due = min(total, int((now - args.start) * args.rate) + 1) if now >= args.start else 0
            while i < due:
                task = asyncio.create_task(call(i, args.start + i / args.rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            wake = args.start + i / args.rate
            await asyncio.sleep(max(0.0, min(0.05, wake - time.time())))
        if tasks:
            await asyncio.wait(tasks, timeout=deadline * 10)
    Path(args.out).write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="host:port of the gateway")
    parser.add_argument("--stubs", required=True, help="folder of scoring_pb2(_grpc).py")
    parser.add_argument("--features", required=True, help="JSON file: feature name -> value")
    parser.add_argument("--rate", type=float, default=0.0, help="calls per second (open loop)")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="closed loop: calls in flight (with --duration)"
    )
    parser.add_argument("--duration", type=float, default=0.0, help="seconds (0: until SIGTERM)")
    parser.add_argument("--start", type=float, required=True, help="wall-clock start (epoch s)")
    parser.add_argument("--deadline-ms", type=float, default=100.0)
    parser.add_argument("--prefix", default="soak", help="signal_id prefix")
    parser.add_argument("--out", required=True, help="CSV of outcomes, one line per call")
    asyncio.run(_run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
