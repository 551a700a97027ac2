"""The installed Hindsight services and their default ports.

A service is every installed distribution's entry point in the group
``hindsight.services`` (``scorer = "hindsight.scorer"``). The operator commands find a
service on this host by its default port (DESIGN.md); the dev stack starts each one as
``python -m <module>`` on those ports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

__all__ = [
    "SERVICE_ENTRY_POINT_GROUP",
    "SERVICE_PORTS",
    "Service",
    "discover_services",
    "service_ports",
]

SERVICE_ENTRY_POINT_GROUP = "hindsight.services"

# Default ports from DESIGN.md, shown in the endpoint table; HTTP serves /healthz.
SERVICE_PORTS: Mapping[str, Mapping[str, int]] = {
    "gateway": {"grpc": 50051, "http": 8085},
    "scorer": {"grpc": 50052, "http": 8086},
    "labeling": {"http": 8080},
    "memory": {"http": 8081},
    "registry": {"http": 8082},
    "trainer": {"http": 8083},
    "embedder": {"http": 8084},
}


@dataclass(frozen=True)
class Service:
    """An installed Hindsight service: its name, the module ``python -m`` runs, its ports."""

    name: str
    module: str
    ports: Mapping[str, int] = field(default_factory=dict)


def service_ports(name: str, environ: Mapping[str, str] | None = None) -> dict[str, int]:
    """The default ports of ``name``, each overridable as the service itself reads it:
    ``HINDSIGHT_<NAME>_<KIND>_PORT`` (e.g. ``HINDSIGHT_SCORER_GRPC_PORT``)."""
    env = os.environ if environ is None else environ
    ports = dict(SERVICE_PORTS.get(name, {}))
    for kind in ports:
        value = env.get(f"HINDSIGHT_{name.upper()}_{kind.upper()}_PORT")
        if value:
            ports[kind] = int(value)
    return ports


def discover_services(environ: Mapping[str, str] | None = None) -> list[Service]:
    """Every ``hindsight.services`` entry point of the installed distributions, by name."""
    found = {
        ep.name: Service(name=ep.name, module=ep.module, ports=service_ports(ep.name, environ))
        for ep in entry_points().select(group=SERVICE_ENTRY_POINT_GROUP)
    }
    return [found[name] for name in sorted(found)]
