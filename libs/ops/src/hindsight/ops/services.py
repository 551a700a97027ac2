"""The installed Hindsight services and their default ports.

A service is every installed distribution's entry point in the group
``hindsight.services`` (``scorer = "hindsight.scorer"``). The operator commands find a
service on this host by its default port (:mod:`hindsight.common.ports`); the dev stack
starts each one as ``python -m <module>`` on those ports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from hindsight.common.ports import PORTS

__all__ = [
    "SERVICE_ENTRY_POINT_GROUP",
    "SERVICE_PORTS",
    "Service",
    "discover_services",
    "service_ports",
]

SERVICE_ENTRY_POINT_GROUP = "hindsight.services"

# The default ports (hindsight.common.ports, which the services' settings read too) by
# kind: {"gateway": {"grpc": 50051, "http": 8085}, ...}; HTTP serves /healthz.
SERVICE_PORTS: Mapping[str, Mapping[str, int]] = {
    name: {"http": ports.http} if ports.grpc is None else {"grpc": ports.grpc, "http": ports.http}
    for name, ports in PORTS.items()
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
