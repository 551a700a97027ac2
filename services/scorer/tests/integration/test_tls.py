"""Scorer gRPC TLS (HINDSIGHT_SCORER_TLS_*) and the mutual-TLS gateway → scorer hop.

A real scorer with a real model on a TLS port that requires client certificates, a real
gateway in front of it (``hindsight.gateway.app``), certificates made by the openssl CLI.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError
from scorer_testkit import Artifact, request, stub

sys.path.insert(0, str(Path(__file__).parents[4] / "libs" / "common" / "tests"))

from tls_testkit import Pki, make_pki  # noqa: E402

from hindsight.common.tls import ClientTls  # noqa: E402
from hindsight.gateway.app import GatewayApp  # noqa: E402
from hindsight.gateway.app import build_app as build_gateway  # noqa: E402
from hindsight.gateway.app import build_settings as gateway_settings  # noqa: E402
from hindsight.scorer.app import ScorerApp, build_settings  # noqa: E402
from hindsight.scorer.domain.deployments import Deployment  # noqa: E402

pytestmark = pytest.mark.integration

SERVICE = "hindsight.scoring.v1.Scoring"
GatewayMaker = Callable[..., Awaitable[GatewayApp]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("rogue"))


@pytest.fixture
async def mtls_scorer(scorer_factory, model_v1: Artifact, shared_root: Path, pki: Pki) -> ScorerApp:  # type: ignore[no-untyped-def]
    """A scorer serving ``model_v1`` that only lets in clients with a certificate from ``pki``."""
    app: ScorerApp = await scorer_factory(
        artifact_root=shared_root,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
    )
    await app.reconciler.apply(Deployment(**model_v1.deployment()))
    return app


@pytest_asyncio.fixture
async def make_gateway() -> AsyncIterator[GatewayMaker]:
    started: list[GatewayApp] = []

    async def make(scorer: ScorerApp, **overrides: Any) -> GatewayApp:
        settings = gateway_settings(
            grpc_port=0,
            http_port=0,
            nats_url="",
            scorers=[f"127.0.0.1:{scorer.grpc.port}"],
            **overrides,
        )
        app = build_gateway(settings)
        await app.start()
        started.append(app)
        return app

    yield make
    for app in reversed(started):
        await app.stop()


def _features(artifact: Artifact, row: np.ndarray) -> dict[str, float]:
    return dict(zip(artifact.feature_names, (float(v) for v in row), strict=True))


def _secure(port: int, tls: ClientTls) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", tls.credentials())


async def test_health_and_scores_need_a_client_certificate(
    mtls_scorer: ScorerApp, model_v1: Artifact, pki: Pki, rogue: Pki
) -> None:
    port = mtls_scorer.grpc.port
    check = health_pb2.HealthCheckRequest(service=SERVICE)
    ours = ClientTls.from_files(pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
    async with _secure(port, ours) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(check, timeout=5)
        answer = await stub(channel).Score(request(_features(model_v1, np.zeros(6))), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert answer.model_version == model_v1.version and not answer.fallback

    refused = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}"),
        _secure(port, ClientTls.from_files(pki.ca)),
        _secure(
            port,
            ClientTls.from_files(pki.ca, cert_file=rogue.client_cert, key_file=rogue.client_key),
        ),
    ]
    for channel in refused:
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await health_pb2_grpc.HealthStub(channel).Check(check, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_gateway_without_a_client_certificate_gets_only_fallbacks(
    mtls_scorer: ScorerApp, make_gateway: GatewayMaker, model_v1: Artifact, pki: Pki
) -> None:
    gateway = await make_gateway(mtls_scorer, scorer_tls_ca_file=pki.ca)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc.port}") as channel:
        answer = await stub(channel).Score(request(_features(model_v1, np.zeros(6))), timeout=5)
    assert answer.fallback and answer.fallback_reason == "unavailable"


async def test_gateway_with_its_client_certificate_gets_real_scores(
    mtls_scorer: ScorerApp, make_gateway: GatewayMaker, model_v1: Artifact, pki: Pki
) -> None:
    gateway = await make_gateway(
        mtls_scorer,
        scorer_tls_ca_file=pki.ca,
        scorer_tls_cert_file=pki.client_cert,
        scorer_tls_key_file=pki.client_key,
        scorer_tls_server_name="scorer.test",
    )
    matrix = np.random.default_rng(3).normal(size=(10, 6)).astype(np.float32)
    expected = model_v1.p_success(matrix)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.grpc.port}") as channel:
        for i, row in enumerate(matrix):
            answer = await stub(channel).Score(
                request(_features(model_v1, row), signal_id=f"s{i}"), timeout=5
            )
            assert not answer.fallback, answer.fallback_reason
            assert answer.model_version == model_v1.version
            assert abs(answer.p_success - float(expected[i])) <= 1e-6


def test_half_configured_or_missing_tls_is_a_startup_error(pki: Pki, tmp_path: Path) -> None:
    refused: list[tuple[dict[str, Any], str]] = [
        ({"tls_key_file": pki.server_key}, "HINDSIGHT_SCORER_TLS_CERT_FILE"),
        ({"tls_client_ca_file": pki.ca}, "HINDSIGHT_SCORER_TLS_CLIENT_CA_FILE .*needs"),
        (
            {
                "tls_cert_file": pki.server_cert,
                "tls_key_file": pki.server_key,
                "tls_client_ca_file": tmp_path / "missing.pem",
            },
            "HINDSIGHT_SCORER_TLS_CLIENT_CA_FILE: .*missing.pem does not exist",
        ),
        (
            {"tls_cert_file": pki.server_cert, "tls_key_file": pki.server_cert},
            "HINDSIGHT_SCORER_TLS_KEY_FILE: .* holds no PEM private key",
        ),
    ]
    for overrides, message in refused:
        with pytest.raises(ValidationError, match=message):
            build_settings(**overrides)
