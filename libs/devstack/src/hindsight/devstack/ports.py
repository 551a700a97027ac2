"""Local TCP ports: find free ones for tests, refuse busy ones with a useful message."""

from __future__ import annotations

import socket

from hindsight.common.errors import ConfigurationError

__all__ = ["PortInUseError", "ensure_port_free", "free_port", "port_in_use", "tcp_open"]


class PortInUseError(ConfigurationError):
    """A port we must listen on is taken by another process."""


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that is free right now (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def tcp_open(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server already listens on host:port (or on all addresses)."""
    if tcp_open(host, port, timeout=0.2):
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR like the servers use, so TIME_WAIT leftovers do not count as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def ensure_port_free(port: int, *, what: str, env_var: str | None, host: str = "127.0.0.1") -> None:
    """Raise PortInUseError naming the variable to change when ``port`` is taken."""
    if not port_in_use(port, host):
        return
    hint = f"; set {env_var} to a free port" if env_var else ""
    raise PortInUseError(f"port {port} for {what} is already in use on {host}{hint}")
