"""Service lifecycle: ordered start, reverse stop, signals."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap

import httpx
import pytest

from hindsight.common.runtime import Part, serve


class Recorder:
    def __init__(self, name: str, log: list[str], *, fail_start: bool = False) -> None:
        self.name, self.log, self.fail_start = name, log, fail_start

    async def start(self) -> None:
        if self.fail_start:
            raise ConnectionError(f"{self.name} cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


@pytest.mark.unit
async def test_parts_start_in_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    stop = asyncio.Event()
    parts = [Part(n, Recorder(n, log)) for n in ("db", "broker", "grpc")]
    task = asyncio.create_task(serve("svc", parts, stop_event=stop))
    while len(log) < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert log == ["start db", "start broker", "start grpc", "stop grpc", "stop broker", "stop db"]


@pytest.mark.unit
async def test_a_part_failing_to_start_stops_the_started_ones() -> None:
    log: list[str] = []
    parts = [
        Part("db", Recorder("db", log)),
        Part("broker", Recorder("broker", log, fail_start=True)),
        Part("grpc", Recorder("grpc", log)),
    ]
    with pytest.raises(ConnectionError, match="broker cannot start"):
        await serve("svc", parts)
    assert log == ["start db", "stop db"]


SERVICE = textwrap.dedent(
    """
    import asyncio, sys
    from hindsight.common.http import HttpServer, create_http_app
    from hindsight.common.logs import configure_logging
    from hindsight.common.runtime import Part, serve

    async def main() -> None:
        configure_logging("demo")
        server = HttpServer(create_http_app(service="demo"), host="127.0.0.1", port=0)
        async def announce():
            print(f"PORT {server.port}", file=sys.stdout, flush=True)
        class Announce:
            async def start(self): await announce()
            async def stop(self): pass
        await serve("demo", [Part("http", server), Part("announce", Announce())])

    asyncio.run(main())
    """
)


@pytest.mark.unit
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_service_cleanly(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVICE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        port = int(line.split()[1])
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert {"service": "demo", "msg": "demo stopped"}.items() <= records[-1].items()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz")
