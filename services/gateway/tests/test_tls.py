"""gRPC TLS on the gateway (HINDSIGHT_GATEWAY_TLS_CERT_FILE / _KEY_FILE), with a self-signed
certificate made by the openssl CLI for this test, against a fake scorer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parent))

from gateway_testkit import Fake, request  # noqa: E402

from hindsight.gateway.app import GatewayApp, build_app, build_settings  # noqa: E402
from hindsight.scoring.v1 import scoring_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.integration


def self_signed(directory: Path) -> tuple[Path, Path]:
    """cert.pem / key.pem for CN=localhost with SANs localhost and 127.0.0.1."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl CLI is needed for this test (apt-get install openssl)"
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest_asyncio.fixture
async def tls_gateway(fake: Fake, tmp_path: Path) -> AsyncIterator[tuple[GatewayApp, bytes]]:
    cert, key = self_signed(tmp_path)
    app = build_app(
        build_settings(
            grpc_port=0,
            http_port=0,
            nats_url="",
            scorers=[fake.target],
            tls_cert_file=cert,
            tls_key_file=key,
        )
    )
    await app.start()
    try:
        yield app, cert.read_bytes()
    finally:
        await app.stop()


async def test_scores_over_tls_and_refuses_plaintext(
    tls_gateway: tuple[GatewayApp, bytes],
) -> None:
    app, ca = tls_gateway
    assert app.tls is not None and app.tls.port
    target = f"127.0.0.1:{app.tls.port}"
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    async with grpc.aio.secure_channel(target, credentials) as channel:
        answer = await scoring_pb2_grpc.ScoringStub(channel).Score(request(), timeout=5)
    assert not answer.fallback and 0 <= answer.p_success <= 1

    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await scoring_pb2_grpc.ScoringStub(channel).Score(request(), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    # The plaintext listener the shared GrpcServer needs is on loopback only.
    assert app.grpc.port != app.tls.port


def test_cert_without_key_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    with pytest.raises(ValidationError, match="_KEY_FILE"):
        build_settings(tls_cert_file=cert)
    with pytest.raises(ValidationError, match="does not exist"):
        build_settings(tls_cert_file=cert, tls_key_file=tmp_path / "missing.pem")
