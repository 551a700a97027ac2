"""gRPC TLS material: PEM checks for settings validators, server and channel credentials.

Settings validators call :func:`check_server_tls_settings` / :func:`check_client_tls_settings`
so that half a pair or a missing or wrong file is a start-up error naming the environment
variable; the composition root then reads the files once into
:class:`ServerTls` / :class:`ClientTls`, whose ``credentials()`` feed ``add_secure_port`` and
``grpc.aio.secure_channel``. With a client CA the server requires a client certificate signed
by it (mutual TLS); there is no "verify if presented" mode, on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import grpc

from hindsight.common.errors import ConfigurationError

__all__ = [
    "ClientTls",
    "PemKind",
    "ServerTls",
    "check_client_tls_settings",
    "check_pem_file",
    "check_server_tls_settings",
    "empty_is_unset",
]

PemKind = Literal["certificate", "private key"]

_PEM_BEGIN: Final[dict[PemKind, re.Pattern[bytes]]] = {
    "certificate": re.compile(rb"-----BEGIN CERTIFICATE-----"),
    "private key": re.compile(rb"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----"),
}
_ENCRYPTED_KEY: Final = re.compile(rb"-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED")


def check_pem_file(path: Path, *, kind: PemKind, variable: str) -> None:
    """Raise ValueError naming ``variable`` unless ``path`` is a readable PEM ``kind``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{variable}: {path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path} ({exc.strerror})") from None
    if kind == "private key" and _ENCRYPTED_KEY.search(data):
        # gRPC takes no passphrase; say so rather than let the bind fail with no reason.
        raise ValueError(f"{variable}: {path} is an encrypted private key (gRPC takes none)")
    if not _PEM_BEGIN[kind].search(data):
        raise ValueError(f"{variable}: {path} holds no PEM {kind}")


def empty_is_unset(value: object) -> object:
    """A ``mode="before"`` validator body: an empty variable (``VAR=``) means unset."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def check_server_tls_settings(
    prefix: str, *, cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None
) -> None:
    """ValueError naming ``{prefix}CERT_FILE`` / ``KEY_FILE`` / ``CLIENT_CA_FILE`` unless the
    server TLS settings are all unset, or complete with readable PEM files."""
    cert_var, key_var, ca_var = (
        f"{prefix}{n}" for n in ("CERT_FILE", "KEY_FILE", "CLIENT_CA_FILE")
    )
    if (cert_file is None) != (key_file is None):
        raise ValueError(f"set both {cert_var} and {key_var}, or neither")
    if client_ca_file is not None and cert_file is None:
        raise ValueError(f"{ca_var} (client certificates) needs {cert_var} and {key_var}")
    if cert_file is not None and key_file is not None:
        check_pem_file(cert_file, kind="certificate", variable=cert_var)
        check_pem_file(key_file, kind="private key", variable=key_var)
    if client_ca_file is not None:
        check_pem_file(client_ca_file, kind="certificate", variable=ca_var)


def check_client_tls_settings(
    prefix: str,
    *,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    server_name: str | None,
    names: tuple[str, str, str, str] | None = None,
) -> None:
    """ValueError naming ``{prefix}CA_FILE`` / ``CERT_FILE`` / ``KEY_FILE`` / ``SERVER_NAME``
    (or ``names``, e.g. a CLI's options) unless the client TLS settings are all unset, or
    complete with readable PEM files."""
    ca_var, cert_var, key_var, name_var = names or tuple(
        f"{prefix}{n}" for n in ("CA_FILE", "CERT_FILE", "KEY_FILE", "SERVER_NAME")
    )
    if (cert_file is None) != (key_file is None):
        raise ValueError(f"set both {cert_var} and {key_var}, or neither")
    if ca_file is None:
        # TLS to the server is what the CA turns on; a client certificate alone means nothing.
        for value, variable in ((cert_file, cert_var), (server_name, name_var)):
            if value is not None:
                raise ValueError(f"{variable} needs {ca_var} (the CA that signed the server)")
        return
    check_pem_file(ca_file, kind="certificate", variable=ca_var)
    if cert_file is not None and key_file is not None:
        check_pem_file(cert_file, kind="certificate", variable=cert_var)
        check_pem_file(key_file, kind="private key", variable=key_var)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {path}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A gRPC server's certificate chain and key; with ``client_ca``, mutual TLS."""

    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = None

    @classmethod
    def from_files(
        cls, cert_file: Path, key_file: Path, *, client_ca_file: Path | None = None
    ) -> ServerTls:
        """Read the PEM files (ConfigurationError when one cannot be read)."""
        return cls(
            certificate_chain=_read(cert_file, "TLS certificate"),
            private_key=_read(key_file, "TLS private key"),
            client_ca=None if client_ca_file is None else _read(client_ca_file, "TLS client CA"),
        )

    @classmethod
    def from_settings(
        cls, cert_file: Path | None, key_file: Path | None, client_ca_file: Path | None
    ) -> ServerTls | None:
        """:meth:`from_files` when a certificate and key are configured; None (plaintext)
        otherwise (a service's ``*_TLS_CERT_FILE`` / ``_KEY_FILE`` / ``_CLIENT_CA_FILE``)."""
        if cert_file is None or key_file is None:
            return None
        return cls.from_files(cert_file, key_file, client_ca_file=client_ca_file)

    @property
    def mutual(self) -> bool:
        """Whether clients must present a certificate signed by ``client_ca``."""
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``add_secure_port``."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.mutual,
        )


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a gRPC client trusts (``ca``) and, for mutual TLS, the certificate it shows."""

    ca: bytes
    certificate_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    """Name checked against the server certificate instead of the target's host."""

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ConfigurationError("a client certificate needs its private key, and back")

    @classmethod
    def from_files(
        cls,
        ca_file: Path,
        *,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        server_name: str | None = None,
    ) -> ClientTls:
        """Read the PEM files (ConfigurationError when one cannot be read)."""
        return cls(
            ca=_read(ca_file, "TLS CA"),
            certificate_chain=None if cert_file is None else _read(cert_file, "TLS certificate"),
            private_key=None if key_file is None else _read(key_file, "TLS private key"),
            server_name=server_name or None,
        )

    @property
    def mutual(self) -> bool:
        """Whether this client presents a certificate."""
        return self.certificate_chain is not None

    def credentials(self) -> grpc.ChannelCredentials:
        """Credentials for ``grpc.aio.secure_channel``."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Channel options this TLS setting needs (the server name override, if any)."""
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]
