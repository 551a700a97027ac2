"""gRPC TLS on the gateway, both ways, over real ports with a throw-away PKI (openssl CLI).

Trading engine → gateway: HINDSIGHT_GATEWAY_TLS_CERT_FILE / _KEY_FILE make the one Scoring
port TLS only; _TLS_CLIENT_CA_FILE requires client certificates. Gateway → scorer:
HINDSIGHT_GATEWAY_SCORER_TLS_CA_FILE (+ _CERT_FILE / _KEY_FILE, _SERVER_NAME) against a fake
scorer that requires a client certificate. The real scorer's side is in the scorer's tests.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parents[4] / "libs" / "common" / "tests"))

from gateway_testkit import Fake, request, start_fake  # noqa: E402
from tls_testkit import Pki, make_pki  # noqa: E402

from hindsight.common.tls import ClientTls, ServerTls  # noqa: E402
from hindsight.gateway.app import GatewayApp, build_app, build_settings  # noqa: E402
from hindsight.gateway.grpc_api import SERVICE_NAME  # noqa: E402
from hindsight.scoring.v1 import scoring_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.integration

GatewayMaker = Callable[..., Awaitable[GatewayApp]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Another CA, with its own client certificate."""
    return make_pki(tmp_path_factory.mktemp("rogue"))


@pytest_asyncio.fixture
async def make_gateway() -> AsyncIterator[GatewayMaker]:
    started: list[GatewayApp] = []

    async def make(**overrides: Any) -> GatewayApp:
        app = build_app(build_settings(grpc_port=0, http_port=0, nats_url="", **overrides))
        await app.start()
        started.append(app)
        return app

    yield make
    for app in reversed(started):
        await app.stop()


@pytest_asyncio.fixture
async def mtls_fake(pki: Pki) -> AsyncIterator[Fake]:
    """A fake scorer that only lets in clients with a certificate from ``pki``'s CA."""
    tls = ServerTls.from_files(pki.server_cert, pki.server_key, client_ca_file=pki.ca)
    started = await start_fake(tls=tls)
    yield started
    await started.server.stop(0)


def _channel(port: int, tls: ClientTls | None) -> grpc.aio.Channel:
    target = f"127.0.0.1:{port}"
    if tls is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, tls.credentials())


async def _score(port: int, tls: ClientTls | None) -> Any:
    async with _channel(port, tls) as channel:
        return await scoring_pb2_grpc.ScoringStub(channel).Score(request(), timeout=5)


async def _refused(port: int, tls: ClientTls | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _score(port, tls)
    code: grpc.StatusCode = info.value.code()
    return code


async def test_tls_only_port_scores_and_refuses_plaintext(
    make_gateway: GatewayMaker, fake: Fake, pki: Pki
) -> None:
    app = await make_gateway(
        scorers=[fake.target], tls_cert_file=pki.server_cert, tls_key_file=pki.server_key
    )
    port, trusted = app.grpc.port, ClientTls.from_files(pki.ca)
    answer = await _score(port, trusted)
    assert not answer.fallback and answer.p_success == pytest.approx(0.25)
    assert await _refused(port, None) == grpc.StatusCode.UNAVAILABLE
    async with _channel(port, trusted) as channel:
        check = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5
        )
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    # The one port is the TLS one: no plaintext listener beside it.
    assert app.grpc.tls is not None and not app.grpc.tls.mutual


async def test_client_ca_requires_a_client_certificate(
    make_gateway: GatewayMaker, fake: Fake, pki: Pki, rogue: Pki
) -> None:
    app = await make_gateway(
        scorers=[fake.target],
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
    )
    port = app.grpc.port
    assert await _refused(port, ClientTls.from_files(pki.ca)) == grpc.StatusCode.UNAVAILABLE
    foreign = ClientTls.from_files(pki.ca, cert_file=rogue.client_cert, key_file=rogue.client_key)
    assert await _refused(port, foreign) == grpc.StatusCode.UNAVAILABLE
    ours = ClientTls.from_files(pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    answer = await _score(port, ours)
    assert not answer.fallback and answer.p_success == pytest.approx(0.25)


@pytest.mark.parametrize("server_name", [None, "scorer.test"])
async def test_mutual_tls_to_the_scorer_gets_real_scores(
    make_gateway: GatewayMaker, mtls_fake: Fake, pki: Pki, server_name: str | None
) -> None:
    app = await make_gateway(
        scorers=[mtls_fake.target],
        scorer_tls_ca_file=pki.ca,
        scorer_tls_cert_file=pki.client_cert,
        scorer_tls_key_file=pki.client_key,
        scorer_tls_server_name=server_name,
    )
    answer = await _score(app.grpc.port, None)
    assert not answer.fallback, answer.fallback_reason
    assert answer.p_success == pytest.approx(0.25)
    assert mtls_fake.scorer.requests, "the call reached the scorer"


def _client(pki: Pki, **extra: Any) -> dict[str, Any]:
    """Settings of a gateway showing ``pki``'s client certificate to the scorers."""
    return {"scorer_tls_cert_file": pki.client_cert, "scorer_tls_key_file": pki.client_key, **extra}


# What the gateway is configured with, from (our PKI, another CA's PKI); the scorer refuses all.
REFUSED: dict[str, Callable[[Pki, Pki], dict[str, Any]]] = {
    "plaintext": lambda pki, rogue: {},
    "no-client-certificate": lambda pki, rogue: {"scorer_tls_ca_file": pki.ca},
    "certificate-of-another-ca": lambda pki, rogue: _client(rogue, scorer_tls_ca_file=pki.ca),
    "scorer-not-trusted": lambda pki, rogue: _client(pki, scorer_tls_ca_file=rogue.ca),
    "wrong-server-name": lambda pki, rogue: _client(
        pki, scorer_tls_ca_file=pki.ca, scorer_tls_server_name="other.test"
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_gateway_the_scorer_refuses_falls_back(
    make_gateway: GatewayMaker, mtls_fake: Fake, pki: Pki, rogue: Pki, case: str
) -> None:
    app = await make_gateway(scorers=[mtls_fake.target], **REFUSED[case](pki, rogue))
    answer = await _score(app.grpc.port, None)
    assert answer.fallback and answer.fallback_reason == "unavailable"
    assert not mtls_fake.scorer.requests, "the scorer never saw the call"


def test_half_configured_or_missing_tls_is_a_startup_error(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    refused: list[tuple[dict[str, Any], str]] = [
        ({"tls_cert_file": pki.server_cert}, "HINDSIGHT_GATEWAY_TLS_KEY_FILE"),
        (
            {"tls_cert_file": pki.server_cert, "tls_key_file": missing},
            "HINDSIGHT_GATEWAY_TLS_KEY_FILE: .*missing.pem does not exist",
        ),
        (
            {"tls_cert_file": pki.server_key, "tls_key_file": pki.server_key},
            "HINDSIGHT_GATEWAY_TLS_CERT_FILE: .* holds no PEM certificate",
        ),
        ({"tls_client_ca_file": pki.ca}, "HINDSIGHT_GATEWAY_TLS_CLIENT_CA_FILE .*needs"),
        (
            {"scorer_tls_cert_file": pki.client_cert, "scorer_tls_key_file": pki.client_key},
            "HINDSIGHT_GATEWAY_SCORER_TLS_CERT_FILE needs HINDSIGHT_GATEWAY_SCORER_TLS_CA_FILE",
        ),
        (
            {"scorer_tls_ca_file": pki.ca, "scorer_tls_key_file": pki.client_key},
            "HINDSIGHT_GATEWAY_SCORER_TLS_CERT_FILE",
        ),
        ({"scorer_tls_server_name": "scorer"}, "HINDSIGHT_GATEWAY_SCORER_TLS_CA_FILE"),
        ({"scorer_tls_ca_file": missing}, "HINDSIGHT_GATEWAY_SCORER_TLS_CA_FILE: .*does not exist"),
    ]
    for overrides, message in refused:
        with pytest.raises(ValidationError, match=message):
            build_settings(**overrides)


def test_tls_variables_are_read_from_the_environment(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HINDSIGHT_GATEWAY_SCORER_TLS_CA_FILE", str(pki.ca))
    monkeypatch.setenv("HINDSIGHT_GATEWAY_SCORER_TLS_CERT_FILE", str(pki.client_cert))
    with pytest.raises(ValidationError, match="HINDSIGHT_GATEWAY_SCORER_TLS_KEY_FILE"):
        build_settings()
    monkeypatch.setenv("HINDSIGHT_GATEWAY_SCORER_TLS_KEY_FILE", str(pki.client_key))
    monkeypatch.setenv("HINDSIGHT_GATEWAY_SCORER_TLS_SERVER_NAME", "scorer.test")
    monkeypatch.setenv("HINDSIGHT_GATEWAY_TLS_CERT_FILE", "")  # empty = unset
    settings = build_settings()
    assert settings.tls_cert_file is None
    assert (settings.scorer_tls_ca_file, settings.scorer_tls_server_name) == (pki.ca, "scorer.test")


async def _cli_score(*args: str) -> tuple[int, str]:
    """`hindsight score` as an operator runs it (a separate process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hindsight.ops", "score",
        "--features", json.dumps(dict(request().features)), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return await proc.wait(), out.decode()


async def test_the_score_cli_speaks_tls_to_a_tls_only_gateway(
    make_gateway: GatewayMaker, fake: Fake, pki: Pki, tmp_path: Path
) -> None:
    app = await make_gateway(
        scorers=[fake.target], tls_cert_file=pki.server_cert, tls_key_file=pki.server_key
    )
    target = f"127.0.0.1:{app.grpc.port}"
    code, out = await _cli_score("--target", target, "--tls-ca", str(pki.ca))
    assert code == 0, out
    answer = json.loads(out)
    assert answer["p_success"] == pytest.approx(0.25) and not answer.get("fallback")

    code, out = await _cli_score("--target", target)  # plaintext to a TLS-only port
    assert code == 1 and "UNAVAILABLE" in out, out
    code, out = await _cli_score("--target", target, "--tls-ca", str(tmp_path / "nope.pem"))
    assert code != 0 and "--tls-ca" in out, out
    code, out = await _cli_score("--target", target, "--tls-cert", str(pki.client_cert))
    assert code != 0 and "--tls-key" in out, out
