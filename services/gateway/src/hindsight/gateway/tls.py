"""Optional TLS on the gateway's gRPC Scoring port.

The shared :class:`~hindsight.common.grpc_server.GrpcServer` binds one plaintext port. With
TLS configured, the composition root binds that plaintext port to an ephemeral loopback
port (unreachable from outside the pod) and this registration binds the configured
``host:port`` with the certificate, so every remote client must speak TLS.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from hindsight.common.errors import ConfigurationError

__all__ = ["TlsPort"]


class TlsPort:
    """A GrpcServer registration that adds the TLS listener; ``port`` once bound."""

    def __init__(self, host: str, port: int, *, cert_file: Path, key_file: Path) -> None:
        try:
            self._cert = cert_file.read_bytes()
            self._key = key_file.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"gateway TLS files unreadable: {exc}") from exc
        self.address = f"{host}:{port}"
        self.port: int | None = None

    def __call__(self, server: grpc.aio.Server) -> None:
        credentials = grpc.ssl_server_credentials([(self._key, self._cert)])
        try:
            self.port = server.add_secure_port(self.address, credentials)
        except RuntimeError as exc:
            raise ConfigurationError(f"cannot bind the gRPC TLS port {self.address}") from exc
