"""A throw-away PKI for TLS tests, made by the openssl CLI (``cryptography`` is not installed).

One CA signs a server certificate (``localhost``, ``127.0.0.1`` and ``scorer.test``) and a
client certificate (``gateway``, clientAuth). Also imported by the gateway and scorer tests.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("localhost", "scorer.test")
"""DNS names in the server certificate (plus IP 127.0.0.1)."""

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]


@dataclass(frozen=True)
class Pki:
    """PEM files of one CA and the two leaf certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def bytes(self, name: str) -> bytes:
        """The content of one of the files, by field name."""
        path: Path = getattr(self, name)
        return path.read_bytes()


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI is needed for TLS tests (apt-get install openssl)"
    subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)


def _leaf(directory: Path, name: str, subject: str, *extensions: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    constraints = ("basicConstraints=critical,CA:FALSE", *extensions)
    ext = [arg for e in constraints for arg in ("-addext", e)]
    _openssl(
        "req", "-x509", *_EC, "-subj", subject, *ext,
        "-CA", str(directory / "ca.pem"), "-CAkey", str(directory / "ca.key"),
        "-keyout", str(key), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    """Write a CA, a server and a client certificate with their keys under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", *_EC, "-subj", "/CN=hindsight test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.pem"),
    )  # fmt: skip
    sans = ",".join([*(f"DNS:{n}" for n in SERVER_NAMES), "IP:127.0.0.1"])
    server = _leaf(
        directory, "server", "/CN=localhost", f"subjectAltName={sans}",
        "extendedKeyUsage=serverAuth",
    )  # fmt: skip
    client = _leaf(directory, "client", "/CN=gateway", "extendedKeyUsage=clientAuth")
    return Pki(directory / "ca.pem", *server, *client)
