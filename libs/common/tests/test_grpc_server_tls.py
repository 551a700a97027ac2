"""GrpcServer with TLS and mutual TLS on a real loopback port, certificates made by openssl."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the test kit importable

from tls_testkit import Pki, make_pki  # noqa: E402

from hindsight.common.errors import ConfigurationError  # noqa: E402
from hindsight.common.grpc_server import GrpcServer  # noqa: E402
from hindsight.common.tls import ClientTls, ServerTls, check_pem_file  # noqa: E402
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.unit

SCORING = "hindsight.scoring.v1.Scoring"
SERVING = health_pb2.HealthCheckResponse.SERVING


class Answers(scoring_pb2_grpc.ScoringServicer):
    async def Score(  # noqa: N802
        self, request: scoring_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ScoreResponse:
        return scoring_pb2.ScoreResponse(signal_id=request.signal_id, p_success=0.75)

    async def ScoreBatch(  # noqa: N802
        self, request: scoring_pb2.ScoreBatchRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ScoreBatchResponse:
        return scoring_pb2.ScoreBatchResponse()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA with its own server and client certificates."""
    return make_pki(tmp_path_factory.mktemp("rogue"))


async def _started(tls: ServerTls) -> GrpcServer:
    servicer = Answers()
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        register=[lambda s: scoring_pb2_grpc.add_ScoringServicer_to_server(servicer, s)],
        service_names=[SCORING],
        tls=tls,
    )
    await server.start()
    return server


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[GrpcServer]:
    server = await _started(ServerTls.from_files(pki.server_cert, pki.server_key))
    yield server
    await server.stop(0)


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[GrpcServer]:
    tls = ServerTls.from_files(pki.server_cert, pki.server_key, client_ca_file=pki.ca)
    server = await _started(tls)
    yield server
    await server.stop(0)


def _channel(port: int, tls: ClientTls | None) -> grpc.aio.Channel:
    target = f"127.0.0.1:{port}"
    if tls is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, tls.credentials(), options=tls.channel_options())


async def _health(port: int, tls: ClientTls | None) -> int:
    async with _channel(port, tls) as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SCORING), timeout=5
        )
    status: int = answer.status
    return status


async def _refused(port: int, tls: ClientTls | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _health(port, tls)
    code: grpc.StatusCode = info.value.code()
    return code


async def test_tls_port_serves_calls_health_and_reflection(
    tls_server: GrpcServer, pki: Pki
) -> None:
    client = ClientTls.from_files(pki.ca)
    async with _channel(tls_server.port, client) as channel:
        answer = await scoring_pb2_grpc.ScoringStub(channel).Score(
            scoring_pb2.ScoreRequest(signal_id="s1"), timeout=5
        )
        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name async for r in listing for s in r.list_services_response.service}
    assert (answer.signal_id, answer.p_success) == ("s1", 0.75)
    assert {SCORING, "grpc.health.v1.Health"} <= names
    assert await _health(tls_server.port, client) == SERVING
    assert tls_server.tls is not None and not tls_server.tls.mutual


async def test_tls_port_refuses_plaintext_and_unknown_ca(
    tls_server: GrpcServer, rogue: Pki
) -> None:
    # One port, TLS only: a plaintext client cannot even get health.
    assert await _refused(tls_server.port, None) == grpc.StatusCode.UNAVAILABLE
    assert await _refused(tls_server.port, ClientTls.from_files(rogue.ca)) == (
        grpc.StatusCode.UNAVAILABLE
    )


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(
    mtls_server: GrpcServer, pki: Pki, rogue: Pki
) -> None:
    port = mtls_server.port
    assert mtls_server.tls is not None and mtls_server.tls.mutual
    assert await _refused(port, ClientTls.from_files(pki.ca)) == grpc.StatusCode.UNAVAILABLE
    signed_elsewhere = ClientTls.from_files(
        pki.ca, cert_file=rogue.client_cert, key_file=rogue.client_key
    )
    assert await _refused(port, signed_elsewhere) == grpc.StatusCode.UNAVAILABLE
    assert await _refused(port, None) == grpc.StatusCode.UNAVAILABLE
    ours = ClientTls.from_files(pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    assert await _health(port, ours) == SERVING


async def test_server_name_override_is_what_the_certificate_must_match(
    mtls_server: GrpcServer, pki: Pki
) -> None:
    def client(name: str) -> ClientTls:
        return ClientTls.from_files(
            pki.ca, cert_file=pki.client_cert, key_file=pki.client_key, server_name=name
        )

    assert await _health(mtls_server.port, client("scorer.test")) == SERVING
    assert await _refused(mtls_server.port, client("other.test")) == grpc.StatusCode.UNAVAILABLE


async def test_a_key_that_is_not_the_certificates_fails_at_start(pki: Pki, rogue: Pki) -> None:
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        register=[],
        service_names=[SCORING],
        tls=ServerTls(pki.bytes("server_cert"), rogue.bytes("server_key")),
    )
    with pytest.raises(ConfigurationError, match="certificate and key"):
        await server.start()


def test_reading_missing_files_is_a_configuration_error(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="private key"):
        ServerTls.from_files(pki.server_cert, tmp_path / "missing.key")
    with pytest.raises(ConfigurationError, match="CA"):
        ClientTls.from_files(tmp_path / "missing.pem")
    with pytest.raises(ConfigurationError, match="private key"):
        ClientTls(ca=pki.bytes("ca"), certificate_chain=pki.bytes("client_cert"))


def test_private_keys_stay_out_of_repr(pki: Pki) -> None:
    server = ServerTls.from_files(pki.server_cert, pki.server_key)
    client = ClientTls.from_files(pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    assert b"PRIVATE KEY" in server.private_key
    assert "PRIVATE KEY" not in repr(server) and "PRIVATE KEY" not in repr(client)


def test_check_pem_file_names_the_variable(pki: Pki, tmp_path: Path) -> None:
    check_pem_file(pki.server_cert, kind="certificate", variable="X_CERT")
    check_pem_file(pki.server_key, kind="private key", variable="X_KEY")
    with pytest.raises(ValueError, match=r"^X_CERT: .*missing.pem does not exist"):
        check_pem_file(tmp_path / "missing.pem", kind="certificate", variable="X_CERT")
    with pytest.raises(ValueError, match=r"^X_KEY: .* holds no PEM private key"):
        check_pem_file(pki.server_cert, kind="private key", variable="X_KEY")
    with pytest.raises(ValueError, match=r"^X_CERT: .* holds no PEM certificate"):
        check_pem_file(pki.server_key, kind="certificate", variable="X_CERT")
    with pytest.raises(ValueError, match=r"^X_CERT: cannot read"):
        check_pem_file(tmp_path, kind="certificate", variable="X_CERT")
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:secret"]
        + ["-in", str(pki.server_key), "-out", str(encrypted)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with pytest.raises(ValueError, match=r"^X_KEY: .* encrypted private key"):
        check_pem_file(encrypted, kind="private key", variable="X_KEY")
