"""The gRPC server helper over a real loopback port: error mapping, health, reflection, stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hindsight.common.errors import (
    AlreadyExistsError,
    ConfigurationError,
    HindsightError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from hindsight.common.grpc_server import (
    INTERNAL_ERROR_MESSAGE,
    GrpcServer,
)
from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc

pytestmark = pytest.mark.unit

SCORING = "hindsight.scoring.v1.Scoring"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# signal_id -> the error the servicer raises, one per row of the mapping table.
RAISED: dict[str, HindsightError] = {
    "exists": AlreadyExistsError("signal already scored"),
    "anonymous": UnauthenticatedError("who are you"),
    "forbidden": PermissionDeniedError("not for you"),
    "down": UnavailableError("model store down"),
    "misconfigured": ConfigurationError("no default model"),
}


class FakeScoring(scoring_pb2_grpc.ScoringServicer):
    """Fails on purpose for chosen inputs; ``signal_id="slow"`` waits for ``release``."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def Score(
        self, request: scoring_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ScoreResponse:
        if "foo" in request.features:
            raise InvalidInputError("unknown feature", field="features.foo")
        if request.model_name == "missing":
            raise NotFoundError("model missing is not loaded")
        if request.signal_id == "boom":
            raise RuntimeError("secret detail")
        if request.signal_id == "abort":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "market closed")
        if request.signal_id in RAISED:
            raise RAISED[request.signal_id]
        if request.signal_id == "slow":
            self.entered.set()
            await self.release.wait()
        p_success = request.features.get("x", 0.5)
        return scoring_pb2.ScoreResponse(
            signal_id=request.signal_id,
            p_success=p_success,
            p_failure=1 - p_success,
            ci_low=p_success - 0.1,
            ci_high=p_success + 0.1,
            contributions={"x": 0.25} if request.explain else {},
            model_version=request.model_version or "v1",
            prediction_time_ms=1.5,
        )

    async def ScoreBatch(
        self, request: scoring_pb2.ScoreBatchRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.ScoreBatchResponse:
        responses = [await self.Score(item, context) for item in request.requests]
        return scoring_pb2.ScoreBatchResponse(responses=responses)


async def _stream_then_fail(
    request: bytes, context: grpc.aio.ServicerContext
) -> AsyncIterator[bytes]:
    yield b"first"
    raise NotFoundError("gone mid-stream")


def _add_streaming_test_service(server: grpc.aio.Server) -> None:
    # A raw-bytes unary-stream method, to check that async generators are wrapped too.
    handler = grpc.unary_stream_rpc_method_handler(_stream_then_fail)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("test.Stream", {"Fail": handler}),)
    )


@pytest.fixture
def servicer() -> FakeScoring:
    return FakeScoring()


@pytest.fixture
async def server(servicer: FakeScoring) -> AsyncIterator[GrpcServer]:
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        register=[
            partial(scoring_pb2_grpc.add_ScoringServicer_to_server, servicer),
            _add_streaming_test_service,
        ],
        service_names=[SCORING],
    )
    await server.start()
    yield server
    await server.stop(grace=0)


@pytest.fixture
async def channel(server: GrpcServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> scoring_pb2_grpc.ScoringStub:
    return scoring_pb2_grpc.ScoringStub(channel)


async def _status_of(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value


async def test_good_call_returns_the_servicer_values(stub: scoring_pb2_grpc.ScoringStub) -> None:
    request = scoring_pb2.ScoreRequest(
        signal_id="s-1", side="buy", features={"x": 0.75}, explain=True, model_version="v7"
    )

    response = await stub.Score(request)

    assert response.signal_id == "s-1"
    assert response.p_success == 0.75
    assert response.p_failure == 0.25
    assert (response.ci_low, response.ci_high) == (0.65, 0.85)
    assert dict(response.contributions) == {"x": 0.25}
    assert response.model_version == "v7"
    assert response.prediction_time_ms == 1.5
    assert not response.fallback


async def test_invalid_input_is_invalid_argument_naming_the_field(
    stub: scoring_pb2_grpc.ScoringStub,
) -> None:
    error = await _status_of(stub.Score(scoring_pb2.ScoreRequest(features={"foo": 1.0})))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "features.foo" in error.details()
    assert "unknown feature" in error.details()


async def test_not_found_error_is_not_found(stub: scoring_pb2_grpc.ScoringStub) -> None:
    error = await _status_of(stub.Score(scoring_pb2.ScoreRequest(model_name="missing")))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "model missing is not loaded"


@pytest.mark.parametrize(
    ("signal_id", "code"),
    [
        ("exists", grpc.StatusCode.ALREADY_EXISTS),
        ("anonymous", grpc.StatusCode.UNAUTHENTICATED),
        ("forbidden", grpc.StatusCode.PERMISSION_DENIED),
        ("down", grpc.StatusCode.UNAVAILABLE),
        ("misconfigured", grpc.StatusCode.INTERNAL),  # a HindsightError without its own code
    ],
)
async def test_each_hindsight_error_maps_to_its_code_with_its_message(
    stub: scoring_pb2_grpc.ScoringStub, signal_id: str, code: grpc.StatusCode
) -> None:
    error = await _status_of(stub.Score(scoring_pb2.ScoreRequest(signal_id=signal_id)))

    assert error.code() == code
    assert error.details() == RAISED[signal_id].message


async def test_unexpected_error_is_internal_without_details(
    stub: scoring_pb2_grpc.ScoringStub, caplog: pytest.LogCaptureFixture
) -> None:
    error = await _status_of(stub.Score(scoring_pb2.ScoreRequest(signal_id="boom")))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_ERROR_MESSAGE
    assert "secret detail" not in (error.details() or "")
    assert "secret detail" not in str(error.trailing_metadata())
    # ... but operators get the whole story in the log.
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert any("secret detail" in str(r.exc_info[1]) for r in logged if r.exc_info)
    assert any("/hindsight.scoring.v1.Scoring/Score" in r.getMessage() for r in logged)


async def test_abort_passes_through_untouched(stub: scoring_pb2_grpc.ScoringStub) -> None:
    error = await _status_of(stub.Score(scoring_pb2.ScoreRequest(signal_id="abort")))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "market closed"


async def test_errors_in_streaming_handlers_are_mapped(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/test.Stream/Fail")(b"")
    received = []

    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for message in call:
            received.append(message)

    assert received == [b"first"]
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "gone mid-stream"


async def test_score_batch_keeps_the_request_order(stub: scoring_pb2_grpc.ScoringStub) -> None:
    ids = ["c", "a", "b", "a2"]
    request = scoring_pb2.ScoreBatchRequest(
        requests=[
            scoring_pb2.ScoreRequest(signal_id=signal_id, features={"x": i / 10})
            for i, signal_id in enumerate(ids)
        ]
    )

    response = await stub.ScoreBatch(request)

    assert [r.signal_id for r in response.responses] == ids
    assert [r.p_success for r in response.responses] == [0.0, 0.1, 0.2, 0.3]


async def test_score_batch_fails_whole_on_invalid_item(stub: scoring_pb2_grpc.ScoringStub) -> None:
    request = scoring_pb2.ScoreBatchRequest(
        requests=[
            scoring_pb2.ScoreRequest(signal_id="ok"),
            scoring_pb2.ScoreRequest(features={"foo": 1}),
        ]
    )

    error = await _status_of(stub.ScoreBatch(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "features.foo" in error.details()


@pytest.mark.parametrize("service", [SCORING, ""])
async def test_health_reports_serving_after_start(channel: grpc.aio.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    response = await health.Check(health_pb2.HealthCheckRequest(service=service))

    assert response.status == SERVING


async def test_health_of_an_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    error = await _status_of(health.Check(health_pb2.HealthCheckRequest(service="nope.Nope")))

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_set_serving_flips_readiness(server: GrpcServer, channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    check = health_pb2.HealthCheckRequest(service=SCORING)

    await server.set_serving(SCORING, False)
    assert (await health.Check(check)).status == NOT_SERVING

    await server.set_serving(SCORING, True)
    assert (await health.Check(check)).status == SERVING


async def test_set_serving_before_start_is_applied_at_start(servicer: FakeScoring) -> None:
    server = GrpcServer(
        host="127.0.0.1",
        port=0,
        register=[partial(scoring_pb2_grpc.add_ScoringServicer_to_server, servicer)],
        service_names=[SCORING],
    )
    await server.set_serving(SCORING, False)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            scoring = await health.Check(health_pb2.HealthCheckRequest(service=SCORING))
            overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    finally:
        await server.stop(grace=0)

    assert scoring.status == NOT_SERVING
    assert overall.status == SERVING


async def test_reflection_lists_and_describes_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SCORING),
    ]

    listed, described = [response async for response in stub.ServerReflectionInfo(iter(requests))]

    names = {service.name for service in listed.list_services_response.service}
    assert {SCORING, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    scoring_file = next(f for f in files if f.name == "hindsight/scoring/v1/scoring.proto")
    assert [m.name for m in scoring_file.service[0].method] == [
        "Score",
        "ScoreBatch",
        "Predict",
        "PredictBatch",
    ]


async def test_stop_is_graceful_then_refuses_new_calls(
    server: GrpcServer, servicer: FakeScoring, channel: grpc.aio.Channel
) -> None:
    stub = scoring_pb2_grpc.ScoringStub(channel)
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    assert (await watch.read()).status == SERVING
    slow = asyncio.ensure_future(stub.Score(scoring_pb2.ScoreRequest(signal_id="slow")))
    await servicer.entered.wait()

    stopping = asyncio.ensure_future(server.stop(grace=30))
    # Health flips before the server stops taking calls: watchers see NOT_SERVING.
    assert (await watch.read()).status == NOT_SERVING
    watch.cancel()
    servicer.release.set()

    response = await slow  # the in-flight call finished within the grace period
    await stopping
    assert response.signal_id == "slow"
    assert response.p_success == 0.5

    error = await _status_of(stub.Score(scoring_pb2.ScoreRequest(signal_id="late")))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_start_fails_clearly_when_the_port_is_taken(server: GrpcServer) -> None:
    second = GrpcServer(host="127.0.0.1", port=server.port, register=[], service_names=[SCORING])

    with pytest.raises(ConfigurationError, match="cannot bind"):
        await second.start()


def test_bad_settings_are_rejected_before_start() -> None:
    with pytest.raises(ConfigurationError):
        GrpcServer(port=70000, register=[], service_names=[SCORING])
    with pytest.raises(ConfigurationError):
        GrpcServer(port=0, register=[], service_names=[])


def test_port_is_unknown_before_start() -> None:
    server = GrpcServer(port=0, register=[], service_names=[SCORING])

    with pytest.raises(RuntimeError):
        _ = server.port
