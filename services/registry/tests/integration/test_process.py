"""``python -m hindsight.registry`` as a real process: ready, JSON logs, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hindsight.devstack.ports import free_port

pytestmark = pytest.mark.integration


def test_the_process_starts_ready_and_stops_on_sigterm(
    fresh_database: str, nats_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HINDSIGHT_NATS_URL": nats_url,
        "HINDSIGHT_DATABASE_URL": fresh_database,
        "HINDSIGHT_ARTIFACT_ROOT": str(tmp_path),
        "HINDSIGHT_REGISTRY_HTTP_PORT": str(port),
    }
    log = (tmp_path / "registry.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hindsight.registry"], env=env, stderr=log, stdout=log
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            time.sleep(0.1)
        assert status == 200, (tmp_path / "registry.log").read_text()[-2000:]
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).json() == []
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    lines = [line for line in (tmp_path / "registry.log").read_text().splitlines() if line]
    records = [json.loads(line) for line in lines]
    assert any(r["msg"] == "registry stopped" and r["service"] == "registry" for r in records)
