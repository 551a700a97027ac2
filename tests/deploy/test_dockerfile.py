"""The one Dockerfile of the services (deploy/docker/Dockerfile), checked per service.

Docker cannot build here, so the file is read the way BuildKit reads it for
``--build-arg SERVICE=<name>``: the global ARGs, then the chain of stages that the last
one stands on (``FROM svc-${SERVICE}`` picks the service's stage). What each image gets
is compared with the rest of the deployment: its ports with the Kubernetes Deployment's
container ports, its user with the pods' ``runAsUser``, its system packages with its
dependencies in uv.lock. Its HEALTHCHECK and CMD are run for real (against a local HTTP
server, and with a ``python`` that prints its arguments) with the image's environment.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from deploy_files import COMPOSE, DEPLOY, OPTIONAL_SERVICES, ROOT, SERVICES, kustomize  # noqa: E402

pytestmark = pytest.mark.unit

DOCKERFILE = DEPLOY / "docker/Dockerfile"
ALL_SERVICES = SERVICES + OPTIONAL_SERVICES
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuations joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not (pending or line.strip()):
            continue  # as Docker: comment lines inside a continuation are skipped too
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    return found


def _expand(value: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m[1] or m[2], m[0]), value)


def _parse() -> tuple[dict[str, str], list[Stage]]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, arguments in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            stages.append(Stage(name=name.strip(), base=base.strip()))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = arguments.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((keyword, arguments))
    return global_args, stages


@dataclass
class Image:
    """What one service's image is made of: its stage chain, as BuildKit resolves it."""

    service: str
    chain: list[Stage]
    stages: dict[str, Stage]
    variables: dict[str, str]

    def each(self, keyword: str) -> list[str]:
        return [
            _expand(arguments, self.variables)
            for stage in self.chain
            for kw, arguments in stage.instructions
            if kw == keyword
        ]

    def last(self, keyword: str) -> str:
        found = self.each(keyword)
        assert found, f"{self.service}: no {keyword}"
        return found[-1]

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for arguments in self.each("ENV"):
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = _expand(value, env)
        return env

    @property
    def exposed(self) -> set[int]:
        return {int(port.split("/")[0]) for ports in self.each("EXPOSE") for port in ports.split()}

    def copied_from(self, stage: str) -> list[str]:
        return [a for a in self.each("COPY") if a.startswith(f"--from={stage} ")]


def _image(service: str) -> Image:
    global_args, stages = _parse()
    by_name = {s.name: s for s in stages}
    variables = {**global_args, "SERVICE": service}  # --build-arg SERVICE=<service>
    chain = [stages[-1]]
    while (base := _expand(chain[0].base, variables)) in by_name:
        chain.insert(0, by_name[base])
    return Image(service, chain, by_name, variables)


def _deployment(service: str) -> dict[str, Any]:
    [deployment] = [
        d
        for d in kustomize(DEPLOY / "k8s/base")
        if (d["kind"], d["metadata"]["name"]) == ("Deployment", service)
    ]
    return deployment


def _closure(package: str) -> set[str]:
    """``package`` and everything it depends on in uv.lock (all platforms)."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = [package]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [d["name"] for d in packages[name].get("dependencies", [])]
    return seen


# --- the template -------------------------------------------------------------------------


def test_one_stage_per_service_and_no_per_service_dockerfiles() -> None:
    _, stages = _parse()
    names = [s.name for s in stages]
    assert len(names) == len(set(names)), names
    assert {n.removeprefix("svc-") for n in names if n.startswith("svc-")} == set(ALL_SERVICES)
    assert stages[-1].base == "svc-${SERVICE}", "the image must be the chosen service's stage"
    assert not list((ROOT / "services").glob("*/Dockerfile")), "one Dockerfile, in deploy/docker"


def test_no_secret_is_baked_into_an_image() -> None:
    text = DOCKERFILE.read_text()
    for keyword, arguments in _instructions(text):
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|PASSWORD|TOKEN)\S*\s*=", arguments), arguments
    assert "--mount=type=secret" not in text


def test_compose_builds_every_service_from_the_template() -> None:
    env = {
        **os.environ,
        "POSTGRES_PASSWORD": "x",
        "HINDSIGHT_ADMIN_TOKEN": "x",
        "GRAFANA_ADMIN_PASSWORD": "x",
    }
    result = subprocess.run(
        [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in ALL_SERVICES:
        build = services[name]["build"]
        assert Path(build["context"]) == ROOT, build
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, build
        assert build["args"] == {"SERVICE": name}, build
        assert services[name]["image"].startswith(f"hindsight-{name}:")


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    lines = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".venv", ".hindsight", ".git", ".env"} <= lines
    # What the builder copies is in the build context.
    for keyword, arguments in _instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and not arguments.startswith("--from="):
            for source in arguments.split()[:-1]:
                assert source.rstrip("/") not in lines, source


# --- each service's image ------------------------------------------------------------------


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_image_is_multistage_and_installs_exactly_its_locked_package(service: str) -> None:
    image = _image(service)
    [copy] = image.copied_from("builder")
    assert copy.split()[1:] == ["/app/.venv", "/app/.venv"], copy
    builder = image.stages["builder"]
    assert builder not in image.chain, "the builder (uv, sources) stays out of the image"
    runs = [_expand(a, {"SERVICE": service}) for kw, a in builder.instructions if kw == "RUN"]
    wanted = ["uv", "sync", "--locked", "--package", f"hindsight-{service}", "--no-dev"]
    assert any(_contains(shlex.split(run), wanted + ["--no-editable"]) for run in runs), runs
    assert (ROOT / "services" / service / "pyproject.toml").exists()


def _contains(tokens: list[str], wanted: list[str]) -> bool:
    return any(tokens[i : i + len(wanted)] == wanted for i in range(len(tokens)))


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_image_runs_as_the_pods_non_root_user(service: str) -> None:
    image = _image(service)
    uid, _, gid = image.last("USER").partition(":")
    assert uid not in {"0", "root", ""} and gid not in {"0", "root"}
    pod = _deployment(service)["spec"]["template"]["spec"]["securityContext"]
    assert (int(uid), int(gid)) == (pod["runAsUser"], pod["runAsGroup"])
    # Nothing runs as root after the USER line.
    keywords = [kw for stage in image.chain for kw, _ in stage.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :]


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_image_binds_and_exposes_the_deployments_ports(service: str) -> None:
    image = _image(service)
    env = image.env
    [container] = _deployment(service)["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert image.exposed == set(ports.values())
    prefix = f"HINDSIGHT_{service.upper()}_"
    assert env[f"{prefix}HTTP_PORT"] == str(ports["http"])
    if "grpc" in ports:
        assert env[f"{prefix}GRPC_PORT"] == str(ports["grpc"])
    for name in env:
        if name.endswith("_PORT"):
            assert env[name.removesuffix("_PORT") + "_HOST"] == "0.0.0.0", name
    # No variable of another service's settings (a copy-paste between stages).
    others = {f"HINDSIGHT_{s.upper()}_" for s in ALL_SERVICES} - {prefix}
    assert not [n for n in env if n.startswith(tuple(others))]


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_image_system_packages_follow_its_locked_dependencies(service: str) -> None:
    image = _image(service)
    installed = {
        token
        for run in image.each("RUN")
        if "apt-get install" in run
        for token in shlex.split(run.split("apt-get install", 1)[1].split("&&")[0])
        if not token.startswith("-")
    }
    dependencies = _closure(f"hindsight-{service}")
    # LightGBM's wheel links against the system OpenMP runtime; nothing else needs one.
    assert installed == ({"libgomp1"} if "lightgbm" in dependencies else set())
    # torch (with its CUDA wheels, GBs) only in the embedder's image.
    assert ("torch" in dependencies) == (service == "embedder")


class _Health(http.server.BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.paths.append(self.path)
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    _Health.paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Health.paths
    finally:
        server.shutdown()
        server.server_close()


def _exec_form(arguments: str) -> list[str]:
    argv = json.loads(arguments)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), arguments
    return argv


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_image_healthcheck_asks_the_services_own_healthz(
    service: str, health_server: tuple[int, list[str]]
) -> None:
    port, paths = health_server
    image = _image(service)
    options, _, command = image.last("HEALTHCHECK").partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = _exec_form(command)
    assert argv[0] == "python", "python of the image's venv (no curl in slim images)"
    env = {**image.env, f"HINDSIGHT_{service.upper()}_HTTP_PORT": str(port)}
    env["PATH"] = os.environ["PATH"]
    result = subprocess.run(
        [sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert paths == ["/healthz"]


@pytest.mark.parametrize("service", ALL_SERVICES)
def test_image_command_runs_the_services_module(service: str, tmp_path: Path) -> None:
    image = _image(service)
    argv = _exec_form(image.last("CMD"))
    # A `python` that prints its arguments stands in for the venv's.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@"\n')
    fake.chmod(0o755)
    env = {**image.env, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(fake), "-m", f"hindsight.{service}"]
    assert importlib.util.find_spec(f"hindsight.{service}.__main__") is not None
    assert image.last("STOPSIGNAL") == "SIGTERM"
    # exec: python, not a shell, is PID 1 and gets the SIGTERM.
    assert argv[:2] != ["/bin/sh", "-c"] or argv[2].startswith("exec ")


def test_labeling_image_gives_its_labels_directory_to_the_user() -> None:
    # A fresh named volume (compose's `labels`) takes the owner of the image's directory.
    image = _image("labeling")
    uid_gid = image.last("USER")
    assert any(
        "mkdir -p /var/lib/hindsight/labels" in run
        and f"chown {uid_gid} /var/lib/hindsight/labels" in run
        for run in image.each("RUN")
    )


def test_embedder_image_is_offline_with_its_mount_points() -> None:
    image = _image("embedder")
    assert image.env["HF_HUB_OFFLINE"] == "1"
    assert image.env["HINDSIGHT_IMAGE_ROOTS"] == "/images"
    made = " ".join(image.each("RUN"))
    [container] = _deployment("embedder")["spec"]["template"]["spec"]["containers"]
    for mount in ("/images", "/models"):
        assert mount in {m["mountPath"] for m in container["volumeMounts"]}
        assert mount in made
