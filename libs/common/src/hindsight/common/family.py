"""Model families: the playbook's heads for one signal, released and served as one unit.

A family release lives under ``HINDSIGHT_ARTIFACT_ROOT`` at ``families/{family}/{version}/``
where ``version`` is the semver written ``v{major}_{minor}_{patch}`` (one path segment;
minor = retrain, major = feature-schema change). It holds one ONNX file per member
(``entry_H.onnx``, ``entry_M.onnx``, ``entry_L.onnx``, ``entry_pooled.onnx``, ``risk.onnx``,
``rr.onnx``, ``offset.onnx``), the LightGBM text of each (``.txt``) and one
``metrics.json``: a :class:`FamilyCard`. Events carry ``artifact_uri`` =
``families/{family}/{version}`` and ``sha256`` = the sha256 of that ``metrics.json``
(which names every member's own sha256), so one hash pins the whole release.

Heads and what they predict (targets from the Back-Labeler's ``signal.labeled``):

============  ==========  =======================  =========================================
head          kind        target                   served value
============  ==========  =======================  =========================================
``entry``     binary      ``y_entry``              ``conf_pat``: calibrated P(+1 R before
                                                   -1 R) for the proposed side
``risk``      quantile    ``sl_katr`` (= the        ``sl_katr``: the 0.7 quantile (0.6 / 0.7 /
                          label's ``dd_katr``)     0.8 trained, sorted so they never cross)
``rr``        quantile    ``rr_target`` (= the      ``rr_target``: the 0.6 quantile
                          label's ``runup_r``)
``offset``    quantile    ``offset_katr`` (= the    ``offset_katr``: the median; its sign
                          ``best_offset_katr``)    gives ``entry_style`` (< 0 LIMIT, else STOP)
============  ==========  =======================  =========================================

Entry routing: the request's ``liquidity_cluster`` (H / M / L) picks the member named in
``FamilyCard.entry_routing`` — the cluster's own expert where it beat the pooled model on
the time-later block, else ``entry_pooled``. The pooled member takes the cluster as one
more input feature, :data:`CLUSTER_FEATURE` (H = 2, M = 1, L = 0, NaN = unknown), so a
request without a cluster is still answered (by the pooled member, cluster missing).

ONNX contract of a member: input ``input`` ``[None, len(features)]`` float32 in the
member's ``features`` order; a binary member outputs ``probabilities`` ``[None, 2]``
(calibrated, clipped to ``[P_MIN, 1 - P_MIN]``, as single models do); a quantile member
outputs ``quantiles`` ``[None, len(alphas)]`` float32, ascending in alpha and never
crossing, already clipped to the member's ``value_range``.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hindsight.common.artifacts import METRICS_FILE, validate_name
from hindsight.common.errors import InvalidInputError

__all__ = [
    "CLUSTERS",
    "CLUSTER_CODES",
    "CLUSTER_FEATURE",
    "DEFAULT_FAMILY",
    "FALLBACK_HEADS",
    "HEADS",
    "HEAD_TARGETS",
    "SERVED_ALPHAS",
    "Cluster",
    "EntryStyle",
    "FamilyCard",
    "FamilyMember",
    "Head",
    "MemberKind",
    "entry_style",
    "family_dir",
    "family_uri",
    "format_version",
    "load_family_card",
    "parse_version",
]

Head = Literal["entry", "risk", "rr", "offset"]
MemberKind = Literal["binary", "quantile"]
Cluster = Literal["H", "M", "L"]
EntryStyle = Literal["STOP", "LIMIT"]

DEFAULT_FAMILY = "playbook"
"""The family a ``Predict`` without ``family`` is answered by."""
HEADS: tuple[Head, ...] = ("entry", "risk", "rr", "offset")
CLUSTERS: tuple[Cluster, ...] = ("H", "M", "L")
CLUSTER_FEATURE = "liquidity_cluster_code"
CLUSTER_CODES: dict[str, float] = {"H": 2.0, "M": 1.0, "L": 0.0}

HEAD_TARGETS: dict[Head, str] = {
    "entry": "y_entry",
    "risk": "sl_katr",
    "rr": "rr_target",
    "offset": "offset_katr",
}
"""The target each head learns, named as the family's training data names it."""

SERVED_ALPHAS: dict[Head, float] = {"risk": 0.7, "rr": 0.6, "offset": 0.5}
"""The quantile each quantile head serves."""

FALLBACK_HEADS: dict[Head, float] = {
    "entry": 0.5,
    "risk": 1.5,
    "rr": 2.0,
    "offset": 0.0,
}
"""Conservative answers when a head has no model in time: no edge (``conf_pat`` 0.5), a
wide stop (1.5 ATR), a fixed 2 R target, no offset (a STOP entry at the signal price)."""

_VERSION_RE = re.compile(r"^v(0|[1-9][0-9]*)_(0|[1-9][0-9]*)_(0|[1-9][0-9]*)$")


def format_version(major: int, minor: int, patch: int) -> str:
    """``v{major}_{minor}_{patch}``: a family release's version, one path segment."""
    if min(major, minor, patch) < 0:
        raise ValueError("version parts must be >= 0")
    return f"v{major}_{minor}_{patch}"


def parse_version(version: str, *, field: str = "family_version") -> tuple[int, int, int]:
    """``(major, minor, patch)`` of ``v{major}_{minor}_{patch}``, or InvalidInputError."""
    match = _VERSION_RE.match(version)
    if match is None:
        raise InvalidInputError("must look like v1_4_0 (v{major}_{minor}_{patch})", field=field)
    return int(match[1]), int(match[2]), int(match[3])


def family_uri(family: str, version: str) -> str:
    """The ``artifact_uri`` of a family release, relative to the artifact root."""
    validate_name(family, field="family")
    parse_version(version)
    return f"families/{family}/{version}"


def family_dir(root: Path, family: str, version: str) -> Path:
    """The directory of one family release."""
    return root / family_uri(family, version)


def entry_style(offset_katr: float) -> EntryStyle:
    """A negative offset is a better price than the signal's (LIMIT); else a STOP entry."""
    return "LIMIT" if offset_katr < 0 else "STOP"


class FamilyMember(BaseModel):
    """One model of a release: which head it serves, its file, inputs and metrics."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    """``entry_H``, ``entry_M``, ``entry_L``, ``entry_pooled``, ``risk``, ``rr``, ``offset``."""
    head: Head
    kind: MemberKind
    target: str
    version: str
    """The member's own version: the release's, or an earlier release's when carried over."""
    file: str
    """The ONNX file, relative to the release directory (``{name}.onnx``)."""
    booster_file: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    features: list[str] = Field(min_length=1)
    """Input columns in order (the family's features, plus CLUSTER_FEATURE for pooled)."""
    nan_allowed: list[str] = Field(default_factory=list)
    output: Literal["probabilities", "quantiles"]
    alphas: list[float] = Field(default_factory=list)
    """Quantile members: the alpha of each output column, ascending."""
    served_alpha: float | None = None
    value_range: tuple[float, float] | None = None
    """Quantile members: answers are clipped into this range (from the training targets)."""
    cluster: Cluster | None = None
    """Entry experts: the cluster the member was trained on; None for pooled and others."""
    calibration: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> FamilyMember:
        if (self.kind == "binary") != (self.output == "probabilities"):
            raise ValueError(f"member {self.name}: kind {self.kind} with output {self.output}")
        if self.kind == "quantile":
            if not self.alphas or self.alphas != sorted(self.alphas):
                raise ValueError(f"member {self.name}: alphas must be non-empty and ascending")
            if self.served_alpha not in self.alphas:
                raise ValueError(f"member {self.name}: served_alpha must be one of alphas")
        return self

    def served_column(self) -> int:
        """The output column a quantile member serves."""
        return self.alphas.index(float(self.served_alpha or 0.0))


class FamilyCard(BaseModel):
    """``metrics.json`` of a family release."""

    model_config = ConfigDict(extra="allow")

    kind: Literal["family"] = "family"
    family: str
    version: str
    """``v{major}_{minor}_{patch}``."""
    training_run_id: str
    created_at: datetime
    feature_schema_version: int
    feature_schema_hash: str | None = None
    features: list[str] = Field(min_length=1)
    """The family's request features (the same names as ``signal.features``)."""
    label_spec: str | None = None
    class_map: dict[str, int] = Field(default_factory=lambda: {"unfavourable": 0, "favourable": 1})
    members: list[FamilyMember] = Field(min_length=1)
    entry_routing: dict[Cluster, str]
    """Cluster → the entry member that serves it (its expert or ``entry_pooled``)."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Release-level figures: the entry head's headline (ROC-AUC, Brier, ...), data sizes."""

    @model_validator(mode="after")
    def _complete(self) -> FamilyCard:
        parse_version(self.version, field="version")
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate member names: {names}")
        heads = {m.head for m in self.members}
        missing = [h for h in HEADS if h not in heads]
        if missing:
            raise ValueError(f"a family release needs every head; missing {missing}")
        if "entry_pooled" not in names:
            raise ValueError("a family release needs the entry_pooled member")
        for cluster in CLUSTERS:
            target = self.entry_routing.get(cluster)
            member = self.member(target) if target else None
            if member is None or member.head != "entry":
                raise ValueError(f"entry_routing[{cluster}] must name an entry member")
        return self

    def member(self, name: str) -> FamilyMember | None:
        return next((m for m in self.members if m.name == name), None)

    def head_member(self, head: Head, cluster: str | None = None) -> FamilyMember:
        """The member that answers ``head`` (for entry: the cluster's routed member)."""
        if head == "entry":
            routing: dict[str, str] = {str(k): v for k, v in self.entry_routing.items()}
            found = self.member(routing.get(cluster or "", "entry_pooled"))
        else:
            found = next((m for m in self.members if m.head == head), None)
        if found is None:
            raise InvalidInputError(f"family release has no member for {head}", field="head")
        return found


def load_family_card(directory: Path) -> FamilyCard:
    """Read and validate ``metrics.json`` of one family release directory."""
    return FamilyCard.model_validate_json((directory / METRICS_FILE).read_bytes())
