"""The default ports of every service: one table, read by the settings, the CLI and the docs.

Each service's settings take their default ``http_port`` / ``grpc_port`` (and the URLs of
the services they call) from here; an environment variable overrides them as usual
(``HINDSIGHT_<SERVICE>_HTTP_PORT``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["GRPC_PORTS", "PORTS", "ServicePorts", "local_url"]


@dataclass(frozen=True, slots=True)
class ServicePorts:
    http: int
    grpc: int | None = None


PORTS: Final[dict[str, ServicePorts]] = {
    "labeling": ServicePorts(http=8080),
    "memory": ServicePorts(http=8081),
    "registry": ServicePorts(http=8082),
    "trainer": ServicePorts(http=8083),
    "embedder": ServicePorts(http=8084),
    "gateway": ServicePorts(http=8085, grpc=50051),
    "scorer": ServicePorts(http=8086, grpc=50052),
    "market": ServicePorts(http=8087),
}


GRPC_PORTS: Final[dict[str, int]] = {
    name: ports.grpc for name, ports in PORTS.items() if ports.grpc is not None
}
"""The services that serve gRPC (``Scoring``), by name."""


def local_url(service: str) -> str:
    """``http://127.0.0.1:<port>`` of ``service``'s HTTP API (the default of a client URL)."""
    return f"http://127.0.0.1:{PORTS[service].http}"
