"""The gateway's gRPC TLS material, read from the files its settings name.

``HINDSIGHT_GATEWAY_TLS_*`` make the one Scoring port TLS only (mutual with a client CA);
``HINDSIGHT_GATEWAY_SCORER_TLS_*`` make the channels to the scorers TLS (mutual with a client
certificate). The settings validators already checked the files; reading them happens here,
once, when the app is built.
"""

from __future__ import annotations

from hindsight.common.tls import ClientTls, ServerTls
from hindsight.gateway.config import GatewaySettings

__all__ = ["scorer_tls", "server_tls"]


def server_tls(settings: GatewaySettings) -> ServerTls | None:
    """TLS of the gateway's own gRPC port; None for plaintext."""
    return ServerTls.from_settings(
        settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file
    )


def scorer_tls(settings: GatewaySettings) -> ClientTls | None:
    """TLS of the gateway → scorer channels; None for plaintext."""
    if settings.scorer_tls_ca_file is None:
        return None
    return ClientTls.from_files(
        settings.scorer_tls_ca_file,
        cert_file=settings.scorer_tls_cert_file,
        key_file=settings.scorer_tls_key_file,
        server_name=settings.scorer_tls_server_name,
    )
