"""`hindsight train | promote | rollback` against the trainer and the registry in-process
(real NATS JetStream and PostgreSQL): the CLI reads their answers into their types
(``hindsight.common.trainer_api``, ``hindsight.common.registry_api``) and prints them as the
service sent them, the same JSON text as ``json.dumps(answer, indent=2)`` of the raw answer;
an answer that is not of its type is a readable error naming the field."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from hindsight.common.broker import STREAM
from hindsight.devstack.synthetic import generate, publish
from hindsight.ops.cli import main as cli_main
from hindsight.registry.app import RegistryApp
from hindsight.registry.app import build_settings as registry_settings
from hindsight.trainer.app import build_settings as trainer_settings
from hindsight.trainer.app import build_trainer

pytestmark = pytest.mark.integration

MODEL = "trade_success"
TOKEN = "ops-commands-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def eventually(probe: Callable[[], Awaitable[Any]], *, what: str, timeout: float = 90) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    """Run ``hindsight *argv`` (in a thread, the services answer on this loop); its exit code
    and what it printed."""
    monkeypatch.setenv("HINDSIGHT_ADMIN_TOKEN", TOKEN)
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))
    return code, capsys.readouterr().out


def as_sent(answer: httpx.Response) -> str:
    """What the CLI printed before it read answers into types: the raw JSON, indented."""
    return json.dumps(answer.json(), indent=2)


async def test_train_reads_the_trainers_answers_and_prints_them_as_sent(
    nats_url: str,
    fresh_database: str,
    jetstream_reset: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    trainer = build_trainer(
        trainer_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            artifact_root=tmp_path / "artifacts",
            admin_token=TOKEN,
            http_port=0,
            schedule_enabled=False,
            registry_url="",
            num_boost_round=40,
            early_stopping_rounds=10,
            cv_folds=3,
            bootstrap_resamples=30,
            min_rows=200,
            min_new_outcomes=100,
        )
    )
    await trainer.start()
    base = f"http://127.0.0.1:{trainer.http.port}"
    monkeypatch.setenv("HINDSIGHT_TRAINER_URL", base)
    try:
        await publish(nats_url, generate(1500, seed=5, derive_share=0.1), ensure_streams=False)
        async with httpx.AsyncClient(timeout=10.0) as client:

            async def ingested() -> bool:
                stats = (await client.get(f"{base}/v1/stats")).json()
                return bool(stats["signals_with_outcome"] >= 1500)

            await eventually(ingested, what="ingestion")

            code, out = await cli(monkeypatch, capsys, "train", "--model", MODEL, "--wait")
            first, _, printed = out.partition("\n")
            assert first.startswith("training run ") and first.endswith(": running"), out
            run_id = first.removeprefix("training run ").removesuffix(": running")
            run = await client.get(f"{base}/v1/runs/{run_id}")
            assert run.json()["status"] == "completed", run.json()["error"]
            assert code == 0
            assert printed == as_sent(run) + "\n"
            assert json.loads(printed)["metrics"]["test"]["roc_auc"] > 0.5
            assert json.loads(printed)["created_at"].endswith("+00:00")  # as the trainer writes

            # Nothing new since: the POST answer is the end state (skipped), printed as sent.
            code, out = await cli(
                monkeypatch, capsys, "train", "--model", MODEL, "--mode", "incremental", "--wait"
            )
            first, _, printed = out.partition("\n")
            assert code == 0 and first.endswith(": skipped"), out
            skipped = json.loads(printed)
            assert list(skipped) == ["training_run_id", "status", "model_name", "mode", "error"]
            assert skipped["status"] == "skipped" and "new outcomes" in skipped["error"]
            assert printed == json.dumps(skipped, indent=2) + "\n"

            # Without --wait: the first line only.
            code, out = await cli(monkeypatch, capsys, "train", "--model", MODEL)
            assert code == 0 and out.startswith("training run ") and out.count("\n") == 1
    finally:
        await trainer.stop()


def write_artifact(root: Path, version: str) -> str:
    """models/{MODEL}/{version}/ with model.onnx bytes and a metrics.json card; its sha256."""
    directory = root / "models" / MODEL / version
    directory.mkdir(parents=True)
    onnx = os.urandom(256)
    (directory / "model.onnx").write_bytes(onnx)
    card = {
        "model_name": MODEL,
        "version": version,
        "training_run_id": f"run-{version}",
        "created_at": datetime.now(UTC).isoformat(),
        "feature_names": ["atr_pct", "rsi_14"],
        "feature_schema_version": 1,
        "onnx_sha256": hashlib.sha256(onnx).hexdigest(),
        "metrics": {
            "test": {"roc_auc": 0.7, "ece": 0.03, "rows": 3000},
            "production": None,
            "trading": {"recommendation": "PROMOTE"},
        },
        "interval_bins": [],
    }
    (directory / "metrics.json").write_text(json.dumps(card))
    return hashlib.sha256(onnx).hexdigest()


async def test_promote_and_rollback_read_the_version_and_print_it_as_sent(
    nats_url: str,
    fresh_database: str,
    jetstream_reset: None,
    nats_client: NatsClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    registry = RegistryApp(
        registry_settings(
            nats_url=nats_url,
            database_url=fresh_database,
            artifact_root=artifacts,
            admin_token=TOKEN,
            http_port=0,
            outbox_poll_s=0.2,
            evaluate_every_s=3600.0,
            auto_rollback=False,
        )
    )
    await registry.start()
    base = f"http://127.0.0.1:{registry.http.port}"
    monkeypatch.setenv("HINDSIGHT_REGISTRY_URL", base)
    v1, v2 = "20261101T010000Z-aaaaaa", "20261108T010000Z-bbbbbb"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            for version in (v1, v2):
                body = {
                    "schema_version": 1,
                    "source": "ops-commands-test",
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "training_run_id": f"run-{version}",
                    "model_name": MODEL,
                    "status": "completed",
                    "version": version,
                    "artifact_uri": f"models/{MODEL}/{version}",
                    "sha256": write_artifact(artifacts, version),
                    "dataset_size": 20000,
                }
                await nats_client.jetstream().publish(
                    "training.completed",
                    json.dumps(body).encode(),
                    stream=STREAM,
                    headers={"Nats-Msg-Id": f"training.completed:run-{version}"},
                )

                async def registered(version: str = version) -> bool:
                    response = await client.get(f"/v1/models/{MODEL}/versions")
                    return response.status_code == 200 and any(
                        r["version"] == version for r in response.json()
                    )

                await eventually(registered, what=f"{version} registered")

            code, printed = await cli(
                monkeypatch, capsys, "promote", MODEL, v2, "--reason", "ops test", "--force"
            )
            assert code == 0
            promoted = await client.get(f"/v1/models/{MODEL}/versions/{v2}")
            assert json.loads(printed)["stage"] == "production"
            assert printed == as_sent(promoted) + "\n"
            assert json.loads(printed)["card"]["metrics"]["test"]["rows"] == 3000

            code, printed = await cli(monkeypatch, capsys, "rollback", MODEL, "--reason", "back")
            assert code == 0
            restored = await client.get(f"/v1/models/{MODEL}/versions/{v1}")
            assert json.loads(printed)["version"] == v1
            assert json.loads(printed)["stage"] == "production"
            assert printed == as_sent(restored) + "\n"
    finally:
        await registry.stop()


class NotARun(BaseHTTPRequestHandler):
    """A trainer that answers POST /v1/runs with a status the API does not have."""

    def do_POST(self) -> None:
        answer = {
            "training_run_id": "r1",
            "status": "queued",
            "model_name": MODEL,
            "mode": "full",
            "error": None,
        }
        body = json.dumps(answer).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def odd_trainer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotARun)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_that_is_not_its_type_names_the_field(
    odd_trainer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HINDSIGHT_TRAINER_URL", odd_trainer)
    monkeypatch.setenv("HINDSIGHT_ADMIN_TOKEN", TOKEN)
    with pytest.raises(SystemExit) as exc:
        cli_main(["train", "--model", MODEL])
    message = str(exc.value)
    assert message.startswith(f"hindsight: POST {odd_trainer}/v1/runs: unexpected answer")
    assert "status" in message and "queued" in message
