"""Loading one family release as a unit: verify every file, open one session per member.

A deployment whose ``artifact_uri`` starts with ``families/`` names a release directory
(``families/{family}/v{X}_{Y}_{Z}``). Its ``sha256`` is the sha256 of the release's
``metrics.json`` (a :class:`~hindsight.common.family.FamilyCard`), which names every
member's own sha256: so one hash pins the release. Every file is read once, hashed and
used from the same bytes (the card is parsed, the ONNX graph opened, from what was hashed),
so a file replaced between the check and the use cannot be served. Any problem raises
:class:`~hindsight.scorer.loader.ArtifactRefusedError` with a short reason for the metric;
the release is never half-loaded. Meant to run in a worker thread, like
:class:`~hindsight.scorer.loader.ArtifactLoader`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from hindsight.common.artifacts import METRICS_FILE, resolve_artifact
from hindsight.common.errors import HindsightError
from hindsight.common.family import FamilyCard, FamilyMember
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.domain.families import LoadedFamily, MemberRunner, Outputs, predict_rows
from hindsight.scorer.domain.features import Matrix
from hindsight.scorer.loader import INPUT_NAME, ArtifactRefusedError, session_options

__all__ = ["FAMILY_PREFIX", "FamilyLoader", "OrtMemberRunner", "is_family_uri"]

FAMILY_PREFIX = "families/"


def is_family_uri(artifact_uri: str) -> bool:
    """True when a deployment's artifact is a family release."""
    return artifact_uri.removeprefix("file://").startswith(FAMILY_PREFIX)


class OrtMemberRunner:
    """One ONNX Runtime session; asks only for the member's output."""

    def __init__(self, session: ort.InferenceSession, output: str) -> None:
        self._session = session
        self._outputs = [output]

    def run(self, matrix: Matrix) -> Outputs:
        """The member's output for a float32 matrix in its feature order."""
        out: Outputs = self._session.run(self._outputs, {INPUT_NAME: matrix})[0]
        return out


class FamilyLoader:
    """Turns a family :class:`Deployment` into a verified, warmed-up :class:`LoadedFamily`."""

    def __init__(self, artifact_root: Path, *, warmup_runs: int = 3) -> None:
        self.artifact_root = artifact_root
        self.warmup_runs = warmup_runs

    def load(self, deployment: Deployment) -> LoadedFamily:
        """Verify and load every member; raises :class:`ArtifactRefusedError`."""
        uri = deployment.artifact_uri
        try:
            directory = resolve_artifact(self.artifact_root, uri)
        except HindsightError as exc:
            raise ArtifactRefusedError(str(exc), reason="outside_root") from exc
        if (self.artifact_root / FAMILY_PREFIX).resolve() not in directory.parents:
            # families/../models/x is inside the root but is no release.
            raise ArtifactRefusedError(
                f"{uri!r} is outside the artifact root's {FAMILY_PREFIX}", reason="outside_root"
            )
        body = _read(directory / METRICS_FILE, uri)
        actual = hashlib.sha256(body).hexdigest()
        if actual != deployment.sha256.lower():
            raise ArtifactRefusedError(
                f"sha256 mismatch for {uri}/{METRICS_FILE}: file {actual}, "
                f"event {deployment.sha256}",
                reason="sha256_mismatch",
            )
        try:
            card = FamilyCard.model_validate_json(body)
        except ValidationError as exc:
            raise ArtifactRefusedError(
                f"invalid family card {uri}/{METRICS_FILE}: {exc}", reason="card"
            ) from exc
        if card.family != deployment.model_name or card.version != deployment.version:
            raise ArtifactRefusedError(
                f"card names {card.family}/{card.version}, "
                f"event {deployment.model_name}/{deployment.version}",
                reason="card_mismatch",
            )
        runners = {m.name: self._member(directory, m, uri) for m in card.members}
        try:
            release = LoadedFamily.build(deployment, card, runners, loaded_at=datetime.now(UTC))
        except ValueError as exc:
            raise ArtifactRefusedError(f"{uri}: {exc}", reason="signature") from exc
        self._warm_up(release)
        return release

    def _member(self, directory: Path, member: FamilyMember, uri: str) -> MemberRunner:
        try:
            path = resolve_artifact(directory, member.file)
        except HindsightError as exc:
            raise ArtifactRefusedError(
                f"member {member.name}: {member.file!r} is outside its release {uri}",
                reason="outside_root",
            ) from exc
        body = _read(path, uri)
        actual = hashlib.sha256(body).hexdigest()
        if actual != member.sha256:
            raise ArtifactRefusedError(
                f"sha256 mismatch for member {member.name} ({uri}/{member.file}): "
                f"file {actual}, card {member.sha256}",
                reason="sha256_mismatch",
            )
        try:
            session = ort.InferenceSession(
                body, sess_options=session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ArtifactRefusedError(
                f"ONNX Runtime refused member {member.name} ({member.file}): {exc}", reason="onnx"
            ) from exc
        _check_signature(session, member)
        return OrtMemberRunner(session, member.output)

    def _warm_up(self, release: LoadedFamily) -> None:
        """Run every member on zero rows, every cluster included; check the contract."""
        clusters = sorted(release.entry)
        matrix = np.zeros((len(clusters), release.features.width), dtype=np.float32)
        try:
            for _ in range(max(1, self.warmup_runs)):
                answers = predict_rows(release, matrix, clusters)
        except Exception as exc:  # a graph that loads but cannot run
            raise ArtifactRefusedError(f"warm-up failed: {exc}", reason="warmup") from exc
        bad_p = [p for p in answers.conf_pat if not 0.0 < p < 1.0]
        if bad_p:
            raise ArtifactRefusedError(
                f"warm-up: entry gave {bad_p}, not a probability in (0, 1)", reason="warmup"
            )
        for head, column in answers.quantile.items():
            for row in column.quantiles:
                values = np.asarray(row)
                if (
                    len(row) != len(column.member.alphas)
                    or not np.all(np.isfinite(values))
                    or np.any(np.diff(values) < 0)
                ):
                    raise ArtifactRefusedError(
                        f"warm-up: {head} ({column.member.name}) gave {row}, "
                        "not finite ascending quantiles",
                        reason="warmup",
                    )


def _read(path: Path, uri: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ArtifactRefusedError(
            f"cannot read {path.name} of {uri}: {exc}", reason="unreadable"
        ) from exc


def _check_signature(session: ort.InferenceSession, member: FamilyMember) -> None:
    """Input ``input`` float [N, len(features)]; output as the card says, float [N, k]."""
    width = len(member.features)
    columns = 2 if member.kind == "binary" else len(member.alphas)
    inputs = session.get_inputs()
    if (
        len(inputs) != 1
        or inputs[0].name != INPUT_NAME
        or inputs[0].type != "tensor(float)"
        or len(inputs[0].shape) != 2
        or not _dim_fits(inputs[0].shape[1], width)
    ):
        found = [(i.name, i.type, i.shape) for i in inputs]
        raise ArtifactRefusedError(
            f"member {member.name}: expected one float input {INPUT_NAME!r} [N, {width}], "
            f"found {found}",
            reason="signature",
        )
    outputs = {o.name: o for o in session.get_outputs()}
    out = outputs.get(member.output)
    if (
        out is None
        or out.type != "tensor(float)"
        or len(out.shape) != 2
        or not _dim_fits(out.shape[1], columns)
    ):
        raise ArtifactRefusedError(
            f"member {member.name}: expected a float output {member.output!r} [N, {columns}], "
            f"found {[(o.name, o.type, o.shape) for o in outputs.values()]}",
            reason="signature",
        )


def _dim_fits(dim: object, expected: int) -> bool:
    # A symbolic or unknown dimension is checked by the warm-up run instead.
    return not isinstance(dim, int) or dim == expected
