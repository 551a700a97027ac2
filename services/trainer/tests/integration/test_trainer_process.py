"""``python -m hindsight.trainer`` as a real process: ready, JSON logs, clean stop."""

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


def test_process_starts_ready_and_stops_cleanly(
    nats_url: str, fresh_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HINDSIGHT_NATS_URL": nats_url,
        "HINDSIGHT_DATABASE_URL": fresh_database,
        "HINDSIGHT_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "HINDSIGHT_TRAINER_HTTP_PORT": str(port),
        "HINDSIGHT_TRAINER_SCHEDULE_ENABLED": "false",
        "HINDSIGHT_TRAINER_REGISTRY_URL": "",
    }
    log = (tmp_path / "trainer.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hindsight.trainer"], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and ready is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if response.status_code == 200:
                    ready = response.json()
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        assert ready is not None, (tmp_path / "trainer.log").read_text()
        assert ready["checks"] == {"database": "ok", "nats": "ok"}
        # Writes are refused without a configured admin token.
        assert httpx.post(f"http://127.0.0.1:{port}/v1/runs", json={}).status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log.close()
    assert code == 0
    lines = [ln for ln in (tmp_path / "trainer.log").read_text().splitlines() if ln.strip()]
    assert lines and all(json.loads(ln) for ln in lines if ln.startswith("{"))
    assert any(
        json.loads(ln).get("msg", "").startswith("trainer st") for ln in lines if ln.startswith("{")
    )
