"""A small kustomize renderer for the features deploy/k8s uses (no kustomize binary here).

Supported, with kustomize's semantics: ``resources`` (files and kustomization directories,
recursively), ``namespace``, ``images`` (``name`` → ``newName`` / ``newTag``) and
``patches`` given by ``path`` as strategic merge patches (maps merge; lists of maps with a
``name`` key merge by name, as containers, env, ports, volumes and volumeMounts do; other
lists are replaced). Anything else in a kustomization.yaml is refused, so an overlay cannot
silently use a feature this renderer would ignore.

Usage: ``python tests/deploy/kustomize_lite.py deploy/k8s/overlays/prod``
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

__all__ = ["render", "strategic_merge"]

CLUSTER_SCOPED = {"PriorityClass", "Namespace", "ClusterRole", "ClusterRoleBinding"}
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
Doc = dict[str, Any]


def _load_all(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge_list(base: list[Any], patch: list[Any]) -> list[Any]:
    named = all(isinstance(item, dict) and "name" in item for item in base + patch)
    if not (named and base):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(base)
    index = {item["name"]: i for i, item in enumerate(merged)}
    for item in patch:
        if item["name"] in index:
            merged[index[item["name"]]] = strategic_merge(merged[index[item["name"]]], item)
        else:
            merged.append(copy.deepcopy(item))
    return merged


def strategic_merge(base: Any, patch: Any) -> Any:
    """Merge ``patch`` into ``base`` the way a strategic merge patch does for our kinds."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        return _merge_list(base, patch)
    return copy.deepcopy(patch)


def _key(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _containers(doc: Doc) -> list[Doc]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def _set_images(docs: list[Doc], images: list[Doc]) -> None:
    for doc in docs:
        for container in _containers(doc):
            image: str = container["image"]
            name, _, tag = image.partition(":")
            for rule in images:
                if rule["name"] == name:
                    container["image"] = f"{rule.get('newName', name)}:{rule.get('newTag', tag)}"


def render(directory: Path) -> list[Doc]:
    """Render the kustomization in ``directory`` to a list of manifests."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomize fields not supported here: {sorted(unknown)}")
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs.extend(render(path) if path.is_dir() else _load_all(path))
    seen = [_key(doc) for doc in docs]
    if len(seen) != len(set(seen)):
        raise ValueError(f"{directory}: duplicate resources {seen}")
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise ValueError(f"{directory}: only `patches: - path:` is supported")
        patches = _load_all(directory / patch_entry["path"])
        if len(patches) != 1:
            raise ValueError(f"{directory}: one patch per file ({patch_entry['path']})")
        for patch in patches:
            matches = [i for i, doc in enumerate(docs) if _key(doc) == _key(patch)]
            if not matches:
                raise ValueError(f"{directory}: patch target {_key(patch)} not found")
            docs[matches[0]] = strategic_merge(docs[matches[0]], patch)
    _set_images(docs, kustomization.get("images", []))
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:  # as kustomize: they have no namespace
                doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def main(argv: list[str]) -> int:
    """Print the rendered overlay as a multi-document YAML stream."""
    docs = render(Path(argv[1]))
    sys.stdout.write("".join("---\n" + yaml.safe_dump(doc, sort_keys=False) for doc in docs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
