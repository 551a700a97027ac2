"""Secured NATS in Kubernetes: the prod overlay gives every service its own NATS URL from a
Secret and the NATS CA, and deploy/k8s/infra/secure runs deploy/nats/nats-secure.conf with
its TLS certificate and passwords from Secrets, while dev and the plain infra stay plain."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from deploy_files import (  # noqa: E402
    DEPLOY,
    OPTIONAL_SERVICES,
    SERVICES,
    kustomize,
    kustomize_text,
    venv_tool,
)

pytestmark = pytest.mark.unit

NATS_SERVICES = SERVICES + OPTIONAL_SERVICES  # all seven connect (create_broker in app.py)
# Users of nats-secure.conf that are not Hindsight services: upstream tools, humans, system.
NON_SERVICE_USERS = {"producer", "operator", "sys"}
SECURE_CONF = DEPLOY / "nats/nats-secure.conf"
CA_SECRET = "hindsight-nats-ca"
_USER = re.compile(r"\buser:\s*(\w+),\s*password:\s*\$(\w+)")


def _render(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = kustomize(directory)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _container(docs: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> Any:
    pod = docs[(kind, name)]["spec"]["template"]["spec"]
    [container] = [c for c in pod["containers"] if c["name"] == name]
    return pod, container


def _users() -> dict[str, str]:
    """NATS user → the environment variable holding its password, from nats-secure.conf."""
    return dict(_USER.findall(SECURE_CONF.read_text()))


def _secret_ref(env: dict[str, Any]) -> tuple[str, str] | None:
    ref = env.get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def _validate_strict(directory: Path, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(kustomize_text(directory))  # exactly what `kubectl apply -k` sends
    result = subprocess.run(
        [venv_tool("kubernetes-validate"), "--strict", "--quiet", str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout


# --- prod overlay: one Secret per service --------------------------------------------------


@pytest.mark.parametrize("service", NATS_SERVICES)
def test_prod_service_reads_its_nats_url_from_its_own_secret(service: str) -> None:
    pod, container = _container(_render(DEPLOY / "k8s/overlays/prod"), "Deployment", service)
    env = [e for e in container["env"] if e["name"] == "HINDSIGHT_NATS_URL"]
    assert len(env) == 1, env
    assert "value" not in env[0], "the URL holds a password: by Secret reference only"
    assert _secret_ref(env[0]) == (f"hindsight-nats-{service}", "url")
    # The ConfigMap still carries a credential-less HINDSIGHT_NATS_URL through envFrom; an
    # `env` entry of the same name takes precedence over `envFrom` in Kubernetes.
    assert {"configMapRef": {"name": "hindsight-config"}} in container["envFrom"]


@pytest.mark.parametrize("service", NATS_SERVICES)
def test_prod_service_trusts_the_nats_ca_from_a_read_only_secret(service: str) -> None:
    pod, container = _container(_render(DEPLOY / "k8s/overlays/prod"), "Deployment", service)
    [cert_file] = [e["value"] for e in container["env"] if e["name"] == "SSL_CERT_FILE"]
    path = PurePosixPath(cert_file)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts.get(str(path.parent))
    assert mount is not None and mount.get("readOnly") is True, (cert_file, mounts)
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume.get("secret", {}).get("secretName") == CA_SECRET, volume
    assert "items" not in volume["secret"], "the whole Secret is mounted, keys by their names"
    assert path.name == "ca.crt"


def test_prod_gives_every_nats_user_service_a_secret_and_no_one_else() -> None:
    docs = _render(DEPLOY / "k8s/overlays/prod")
    secrets: dict[str, str] = {}
    for (kind, name), doc in docs.items():
        if kind != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                ref = _secret_ref(env)
                if env["name"] == "HINDSIGHT_NATS_URL" and ref:
                    secrets[name] = ref[0]
    assert sorted(secrets) == sorted(NATS_SERVICES)
    assert len(set(secrets.values())) == len(secrets), "each service has a Secret of its own"
    users = set(_users())
    assert NON_SERVICE_USERS <= users, "NON_SERVICE_USERS names a user nats-secure.conf lacks"
    # No service without a NATS user, no NATS user (but the known tools') without a service.
    assert users - NON_SERVICE_USERS == set(secrets)
    assert {f"hindsight-nats-{user}" for user in users - NON_SERVICE_USERS} == set(secrets.values())
    assert not [key for key in docs if key[0] == "Secret"], "a Secret must not be committed"


def test_dev_keeps_the_plain_nats_of_the_config_map() -> None:
    docs = _render(DEPLOY / "k8s/overlays/dev")
    assert docs[("ConfigMap", "hindsight-config")]["data"]["HINDSIGHT_NATS_URL"] == (
        "nats://nats:4222"
    )
    for service in NATS_SERVICES:
        pod, container = _container(docs, "Deployment", service)
        names = {e["name"] for e in container.get("env", [])}
        assert not names & {"HINDSIGHT_NATS_URL", "SSL_CERT_FILE"}, service
        assert "nats-ca" not in {v["name"] for v in pod["volumes"]}, service
    conf = docs[("ConfigMap", "nats-config")]["data"]["nats.conf"]
    assert "tls" not in re.sub(r"#.*", "", conf) and "accounts" not in conf


# --- deploy/k8s/infra/secure: the in-cluster NATS with nats-secure.conf -------------------


@pytest.mark.parametrize("variant", ["infra", "infra/secure"])
def test_infra_variant_renders_and_passes_kubernetes_validate_strict(
    variant: str, tmp_path: Path
) -> None:
    docs = kustomize(DEPLOY / "k8s" / variant)
    assert {(d["kind"], d["metadata"]["name"]) for d in docs} >= {
        ("StatefulSet", "nats"),
        ("Service", "nats"),
        ("ConfigMap", "nats-config"),
        ("StatefulSet", "postgres"),
    }
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret must not be committed"
    _validate_strict(DEPLOY / "k8s" / variant, tmp_path)


def test_secure_infra_runs_nats_secure_conf_verbatim() -> None:
    docs = _render(DEPLOY / "k8s/infra/secure")
    assert docs[("ConfigMap", "nats-config")]["data"]["nats.conf"] == SECURE_CONF.read_text(), (
        "deploy/k8s/infra/secure/config.yaml is out of date: paste deploy/nats/nats-secure.conf"
    )


def test_secure_infra_takes_every_password_from_a_secret() -> None:
    pod, container = _container(_render(DEPLOY / "k8s/infra/secure"), "StatefulSet", "nats")
    variables = set(_users().values())
    assert variables == set(re.findall(r"\$(NATS_\w+_PASSWORD)", SECURE_CONF.read_text()))
    from_secrets = {}
    for env in container["env"]:
        if env["name"].startswith("NATS_"):
            assert "value" not in env, env
            from_secrets[env["name"]] = _secret_ref(env)
    assert set(from_secrets) == variables
    assert all(ref == ("hindsight-nats-passwords", name) for name, ref in from_secrets.items())


def test_secure_infra_mounts_the_config_and_tls_files_where_nats_conf_names_them() -> None:
    docs = _render(DEPLOY / "k8s/infra/secure")
    pod, container = _container(docs, "StatefulSet", "nats")
    args = container["args"]
    config_path = PurePosixPath(args[args.index("-c") + 1])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    conf = SECURE_CONF.read_text()
    files = re.findall(r'^\s*(?:cert|key)_file:\s*"([^"]+)"', conf, flags=re.M)
    assert len(files) == 2, files
    for wanted in [config_path, *map(PurePosixPath, files)]:
        [(mount_path, mount)] = [
            (p, m) for p, m in mounts.items() if wanted.is_relative_to(PurePosixPath(p))
        ]
        assert mount.get("readOnly") is True, mount
        relative = str(wanted.relative_to(PurePosixPath(mount_path)))
        volume = volumes[mount["name"]]
        assert "configMap" not in volume, "one projected volume, not a ConfigMap beside it"
        provided: dict[str, tuple[str, str]] = {}
        for source in volume["projected"]["sources"]:
            if "configMap" in source:
                name = source["configMap"]["name"]
                provided |= dict.fromkeys(docs[("ConfigMap", name)]["data"], ("configMap", name))
            else:
                secret = source["secret"]
                provided |= {i["path"]: ("secret", secret["name"]) for i in secret["items"]}
        assert relative in provided, (wanted, provided)
        if wanted != config_path:
            assert provided[relative] == ("secret", "hindsight-nats-tls"), provided[relative]


def test_plain_infra_stays_plain() -> None:
    docs = _render(DEPLOY / "k8s/infra")
    conf = docs[("ConfigMap", "nats-config")]["data"]["nats.conf"]
    assert "port: 4222" in conf and "jetstream" in conf
    assert "tls" not in re.sub(r"#.*", "", conf) and "accounts" not in conf
    pod, container = _container(docs, "StatefulSet", "nats")
    assert not [e for e in container["env"] if e["name"].startswith("NATS_")]
    assert {v["name"]: v for v in pod["volumes"]}["config"] == {
        "name": "config",
        "configMap": {"name": "nats-config"},
    }
