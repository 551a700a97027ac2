"""``python -m hindsight.labeling`` as a process: starts, migrates, serves, stops on SIGTERM."""

from __future__ import annotations

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


def test_process_serves_login_and_readyz(
    nats_url: str, fresh_database: str, jetstream_reset: None, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HINDSIGHT_NATS_URL": nats_url,
        "HINDSIGHT_DATABASE_URL": fresh_database,
        "HINDSIGHT_IMAGE_ROOTS": str(tmp_path),
        "HINDSIGHT_DATA_DIR": str(tmp_path / "data"),
        "HINDSIGHT_LABELING_HTTP_PORT": str(port),
        "HINDSIGHT_LABELING_KEYMAP": '{"approve": ["y", "a"]}',
    }
    # Not installed editable until the workspace is re-synced: make the source importable.
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hindsight.labeling"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "nats": "ok"}
        login = httpx.get(f"{base}/login", timeout=5)
        assert login.status_code == 200 and 'id="login-form"' in login.text
        assert httpx.get(f"{base}/api/items", timeout=5).status_code == 401
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert "hindsight_labeling_queue_items" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
