"""The prod overlay's gRPC TLS wiring: every TLS variable is a real setting and names a file
in a read-only Secret volume (Secret by name only), and each hop is complete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from deploy_files import DEPLOY, kustomize  # noqa: E402

from hindsight.gateway.config import GatewaySettings  # noqa: E402
from hindsight.scorer.config import ScorerSettings  # noqa: E402

pytestmark = pytest.mark.unit

SETTINGS: dict[str, type[Any]] = {"gateway": GatewaySettings, "scorer": ScorerSettings}
# What each hop needs in prod: TLS-only gateway port, mutual TLS gateway → scorer.
REQUIRED = {
    "gateway": {
        "HINDSIGHT_GATEWAY_TLS_CERT_FILE",
        "HINDSIGHT_GATEWAY_TLS_KEY_FILE",
        "HINDSIGHT_GATEWAY_SCORER_TLS_CA_FILE",
        "HINDSIGHT_GATEWAY_SCORER_TLS_CERT_FILE",
        "HINDSIGHT_GATEWAY_SCORER_TLS_KEY_FILE",
    },
    "scorer": {
        "HINDSIGHT_SCORER_TLS_CERT_FILE",
        "HINDSIGHT_SCORER_TLS_KEY_FILE",
        "HINDSIGHT_SCORER_TLS_CLIENT_CA_FILE",
    },
}
SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}  # a kubernetes.io/tls Secret (+ cert-manager CA)


def _pod(overlay: str, name: str) -> dict[str, Any]:
    docs = kustomize(DEPLOY / "k8s/overlays" / overlay)
    [deployment] = [d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", name)]
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _tls_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "_TLS_" in e["name"]}


@pytest.mark.parametrize("service", ["gateway", "scorer"])
def test_prod_tls_files_come_from_read_only_secret_volumes(service: str) -> None:
    pod = _pod("prod", service)
    [container] = [c for c in pod["containers"] if c["name"] == service]
    env = _tls_env(container)
    assert REQUIRED[service] <= set(env), REQUIRED[service] - set(env)
    prefix = SETTINGS[service].model_config["env_prefix"]
    fields = SETTINGS[service].model_fields
    for variable in env:
        assert variable.removeprefix(prefix).lower() in fields, f"{variable} is no setting"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for variable, path in env.items():
        if not variable.endswith("_FILE"):
            continue
        directory, _, key = path.rpartition("/")
        assert key in SECRET_KEYS, (variable, path)
        mount = mounts.get(directory)
        assert mount is not None and mount.get("readOnly") is True, (variable, path)
        secret = volumes[mount["name"]].get("secret")
        assert secret and secret["secretName"].startswith("hindsight-"), (variable, secret)
        assert "items" not in secret, "the whole Secret is mounted, keys by their own names"


def test_dev_stays_plaintext() -> None:
    for service in ("gateway", "scorer"):
        [container] = _pod("dev", service)["containers"]
        assert not _tls_env(container), service
