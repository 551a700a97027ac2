"""gRPC server helpers: one error-mapping interceptor and a server with health and reflection.

Servicers raise :mod:`hindsight.common.errors`; :class:`ErrorInterceptor` turns them into
status codes in one table, so no servicer sets codes by hand. :class:`GrpcServer` adds the
standard ``grpc.health.v1`` service and server reflection, and shuts down gracefully. Given a
:class:`~hindsight.common.tls.ServerTls`, its one port speaks TLS only (health and reflection
included); there is never a second, plaintext listener.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import grpc
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

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
from hindsight.common.tls import ServerTls

__all__ = [
    "INTERNAL_ERROR_MESSAGE",
    "ErrorInterceptor",
    "GrpcServer",
    "Registration",
]

logger = logging.getLogger(__name__)

Registration = Callable[[grpc.aio.Server], None]
"""Adds servicers to a server, e.g. ``partial(add_ScoringServicer_to_server, servicer)``."""

INTERNAL_ERROR_MESSAGE: Final = "internal error"
"""The details of INTERNAL for unexpected exceptions: nothing about the internals leaks."""

# The one place where Hindsight errors meet gRPC codes. Looked up along the exception's
# MRO, so a subclass maps like its nearest listed ancestor; HindsightError is the catch-all.
_STATUS_BY_ERROR: Final[Mapping[type[HindsightError], grpc.StatusCode]] = MappingProxyType(
    {
        InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
        NotFoundError: grpc.StatusCode.NOT_FOUND,
        AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
        UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
        PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
        UnavailableError: grpc.StatusCode.UNAVAILABLE,
        HindsightError: grpc.StatusCode.INTERNAL,
    }
)

# Handler kinds and the grpc factory that rebuilds each one around a wrapped behaviour.
_HANDLER_FACTORIES: Final = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)


def _status_for(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and details to answer for ``exc``; logs what operators must see."""
    if isinstance(exc, HindsightError):
        code = next(_STATUS_BY_ERROR[cls] for cls in type(exc).__mro__ if cls in _STATUS_BY_ERROR)
        if code == grpc.StatusCode.INTERNAL:
            logger.error("%s failed: %s", method, exc.message, exc_info=exc)
        else:
            logger.debug("%s answered %s: %s", method, code.name, exc.message)
        return code, exc.message
    logger.exception("%s failed with an unexpected error", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_ERROR_MESSAGE


def _wrap(behavior: Callable[..., Any], method: str) -> Callable[..., Any] | None:
    """An async behaviour that maps exceptions to statuses; None for sync behaviours."""
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except grpc.aio.AbortError:
                raise  # context.abort() already chose the status
            except Exception as exc:
                await context.abort(*_status_for(exc, method))

        return stream

    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise  # context.abort() already chose the status
            except Exception as exc:
                await context.abort(*_status_for(exc, method))

        return call

    # Sync behaviours run in grpc's thread pool with another context type; Hindsight
    # servicers are async, so these (e.g. UNIMPLEMENTED stubs) pass through untouched.
    return None


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Maps Hindsight errors to gRPC status codes and hides unexpected exceptions.

    ``InvalidInputError`` becomes INVALID_ARGUMENT with a message naming the field, the
    other :mod:`hindsight.common.errors` classes their matching code, any other
    ``HindsightError`` INTERNAL with its message, and any other exception INTERNAL with
    :data:`INTERNAL_ERROR_MESSAGE` (the exception is logged). Aborts pass through.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Wrap the behaviour of the handler found for this call."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        for kind, factory in _HANDLER_FACTORIES:
            behavior = getattr(handler, kind)
            if behavior is None:
                continue
            wrapped = _wrap(behavior, handler_call_details.method)
            if wrapped is None:
                return handler
            return factory(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class GrpcServer:
    """A ``grpc.aio`` server with error mapping, ``grpc.health.v1`` and reflection.

    Nothing is built or bound before :meth:`start`, so it can be created outside the
    event loop (the composition root does) and started inside it. It cannot be restarted.
    With ``tls`` the port is bound with ``add_secure_port`` (mutual TLS when it has a client
    CA); without, it is plaintext.
    """

    def __init__(
        self,
        *,
        port: int,
        register: Sequence[Registration],
        service_names: Sequence[str],
        host: str = "[::]",
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        options: Iterable[tuple[str, Any]] = (),
        maximum_concurrent_rpcs: int | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigurationError(f"gRPC port must be in 0..65535, got {port}")
        if not service_names or not all(service_names):
            raise ConfigurationError("service_names must name at least one service, none empty")
        self._host = host
        self._requested_port = port
        self._register = tuple(register)
        self._service_names = tuple(service_names)
        self._interceptors = tuple(interceptors)
        # SO_REUSEPORT would let a second process bind the same port and silently take
        # half the traffic; a port in use must be an error at start.
        self._options = tuple({"grpc.so_reuseport": 0, **dict(options)}.items())
        self._maximum_concurrent_rpcs = maximum_concurrent_rpcs
        self._tls = tls
        self._serving = dict.fromkeys(("", *self._service_names), True)
        self._server: grpc.aio.Server | None = None
        self._health: grpc_health.aio.HealthServicer | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (the one picked by the OS when 0 was asked); only after start."""
        if self._port is None:
            raise RuntimeError("the gRPC server is not started")
        return self._port

    @property
    def tls(self) -> ServerTls | None:
        """The TLS material the port is bound with; None for plaintext."""
        return self._tls

    @property
    def service_names(self) -> tuple[str, ...]:
        """The application services this server reports in health and reflection."""
        return self._service_names

    async def start(self) -> None:
        """Build the server, bind the port, mark services SERVING and start serving."""
        if self._server is not None:
            raise RuntimeError("the gRPC server was already started")
        server = grpc.aio.server(
            interceptors=(ErrorInterceptor(), *self._interceptors),
            options=self._options,
            maximum_concurrent_rpcs=self._maximum_concurrent_rpcs,
        )
        for register in self._register:
            register(server)
        health = grpc_health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            (*self._service_names, grpc_health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{self._host}:{self._requested_port}"
        try:
            if self._tls is None:
                port: int = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self._tls.credentials())
        except RuntimeError as exc:
            # grpc says no more than "failed to bind"; with TLS a key that does not match
            # its certificate (or an unparsable PEM) fails here too.
            hint = "" if self._tls is None else " (port in use, or TLS certificate and key differ)"
            raise ConfigurationError(f"cannot bind the gRPC server to {address}{hint}") from exc
        # Statuses are in place before the first call can arrive.
        for name, serving in self._serving.items():
            await health.set(name, _health_status(serving=serving))
        await server.start()
        self._server, self._health, self._port = server, health, port
        logger.info(
            "gRPC server listening on %s:%d with %s (%s)",
            self._host,
            port,
            _security(self._tls),
            self._service_names,
        )

    async def set_serving(self, service: str, serving: bool) -> None:
        """Flip one service's health status ("" is the whole server); before start too."""
        self._serving[service] = serving
        if self._health is not None:
            await self._health.set(service, _health_status(serving=serving))

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, refuse new calls and let in-flight ones finish within ``grace``.

        Calls still running after ``grace`` seconds are cancelled; open health ``Watch``
        streams count as running calls. Safe to call twice.
        """
        if self._server is None or self._health is None:
            return
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        logger.info("gRPC server on port %s stopped", self._port)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops; False when ``timeout`` passed first."""
        if self._server is None:
            raise RuntimeError("the gRPC server is not started")
        terminated: bool = await self._server.wait_for_termination(timeout)
        return terminated


def _security(tls: ServerTls | None) -> str:
    if tls is None:
        return "plaintext"
    return "mutual TLS" if tls.mutual else "TLS"


def _health_status(*, serving: bool) -> Any:
    return (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
