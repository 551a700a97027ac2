"""What a ``training.completed`` artifact holds, checked before it becomes a version.

A single model (``models/{name}/{version}``) is pinned by the sha256 of its ``model.onnx``;
a family release (``families/{family}/v{X}_{Y}_{Z}``) by the sha256 of its ``metrics.json``,
which names every member's file and sha256. Both are read here (blocking I/O: run in a
thread); what cannot become a promotable version raises :class:`Refused` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from hindsight.common.artifacts import METRICS_FILE, ONNX_FILE, load_card, sha256_file
from hindsight.common.events import TrainingCompleted
from hindsight.common.family import family_uri, load_family_card, parse_version
from hindsight.registry.domain import VersionKind
from hindsight.registry.storage import JsonObject

__all__ = ["FAMILIES_DIR", "Inspected", "Refused", "inspect_artifact", "kind_of", "check_event"]

FAMILIES_DIR = "families"
"""The top folder of family releases under the artifact root."""


class Refused(Exception):
    """The artifact cannot become a promotable version; the message says why."""


@dataclass(frozen=True, slots=True)
class Inspected:
    """A checked artifact: its ``metrics.json`` as stored, and what it is."""

    card: JsonObject
    kind: VersionKind


def kind_of(root: Path, directory: Path) -> VersionKind:
    """``family`` when the (resolved, confined) artifact directory lies under families/."""
    parts = directory.relative_to(root.resolve()).parts
    return "family" if parts and parts[0] == FAMILIES_DIR else "model"


def check_event(kind: VersionKind, event: TrainingCompleted) -> None:
    """Bad input a family event can carry: a version that is not ``v{X}_{Y}_{Z}``."""
    if kind == "family" and event.version is not None:
        parse_version(event.version, field="version")


def _unreadable(exc: Exception) -> Refused:
    return Refused(f"metrics.json unreadable: {' '.join(str(exc).split())[:500]}")


def _inspect_model(directory: Path, event: TrainingCompleted) -> JsonObject:
    onnx = directory / ONNX_FILE
    if not onnx.is_file():
        raise Refused(f"{ONNX_FILE} not found in {event.artifact_uri}")
    actual = sha256_file(onnx)
    if actual != event.sha256:
        raise Refused(f"sha256 mismatch: event says {event.sha256}, {ONNX_FILE} has {actual}")
    try:
        card = load_card(directory)
    except (OSError, ValidationError, ValueError) as exc:
        raise _unreadable(exc) from exc
    if (card.model_name, card.version) != (event.model_name, event.version):
        raise Refused(
            f"metrics.json is for {card.model_name}/{card.version}, "
            f"event is for {event.model_name}/{event.version}"
        )
    if card.onnx_sha256 != actual:
        raise Refused(f"metrics.json onnx_sha256 {card.onnx_sha256} != {ONNX_FILE} {actual}")
    return card.model_dump(mode="json")


def _inspect_family(root: Path, directory: Path, event: TrainingCompleted) -> JsonObject:
    assert event.version is not None
    expected = family_uri(event.model_name, event.version)
    if directory != (root / expected).resolve():
        raise Refused(f"artifact_uri {event.artifact_uri} is not {expected}")
    metrics = directory / METRICS_FILE
    if not metrics.is_file():
        raise Refused(f"{METRICS_FILE} not found in {event.artifact_uri}")
    actual = sha256_file(metrics)
    if actual != event.sha256:
        raise Refused(f"sha256 mismatch: event says {event.sha256}, {METRICS_FILE} has {actual}")
    try:
        card = load_family_card(directory)
    except (OSError, ValidationError, ValueError) as exc:
        raise _unreadable(exc) from exc
    if (card.family, card.version) != (event.model_name, event.version):
        raise Refused(
            f"metrics.json is for family {card.family}/{card.version}, "
            f"event is for {event.model_name}/{event.version}"
        )
    for member in card.members:
        for label, name in (("file", member.file), ("booster_file", member.booster_file)):
            if name is None:
                continue
            path = (directory / name).resolve()
            if directory not in path.parents:
                raise Refused(f"member {member.name}: {label} {name!r} is outside the release")
            if not path.is_file():
                raise Refused(f"member {member.name}: {name} not found in {event.artifact_uri}")
        found = sha256_file((directory / member.file).resolve())
        if found != member.sha256:
            raise Refused(
                f"member {member.name}: sha256 mismatch: metrics.json says {member.sha256}, "
                f"{member.file} has {found}"
            )
    return card.model_dump(mode="json")


def inspect_artifact(
    root: Path, directory: Path, kind: VersionKind, event: TrainingCompleted
) -> Inspected:
    """Check the artifact ``event`` names (``directory``, confined to ``root``)."""
    if kind == "family":
        return Inspected(_inspect_family(root, directory, event), "family")
    return Inspected(_inspect_model(directory, event), "model")
