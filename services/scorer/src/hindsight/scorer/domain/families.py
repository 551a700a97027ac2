"""Loaded family releases, their store, and ``Predict``'s routing and output assembly.

A release (:class:`LoadedFamily`) is served as one unit: its members' runners, the
family's feature index (the request's ``features``), and per member the columns of the
family matrix it reads. Entry rows are routed by liquidity cluster
(``FamilyCard.head_member("entry", cluster)``); the pooled member reads
:data:`~hindsight.common.family.CLUSTER_FEATURE` (the cluster's code, NaN when unknown).
Every value answered is a member's ONNX output as is (float32 → float): the members'
graphs already calibrate, clip and sort (the family contract), and the loader refused any
release whose warm-up output broke that contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.family import (
    CLUSTER_CODES,
    CLUSTER_FEATURE,
    CLUSTERS,
    FamilyCard,
    FamilyMember,
    Head,
)
from hindsight.common.limits import truncated
from hindsight.scorer.domain.deployments import Deployment, Stage
from hindsight.scorer.domain.features import FeatureIndex, Matrix
from hindsight.scorer.domain.versioned import VersionedStore

__all__ = [
    "QUANTILE_HEADS",
    "FamilyPredictions",
    "FamilyStore",
    "LoadedFamily",
    "Member",
    "MemberRunner",
    "QuantileColumn",
    "cluster_codes",
    "predict_rows",
]

QUANTILE_HEADS: tuple[Head, ...] = ("risk", "rr", "offset")

Outputs = npt.NDArray[np.float32]


class MemberRunner(Protocol):
    """What prediction needs from a member's runtime (ONNX Runtime in production)."""

    def run(self, matrix: Matrix) -> Outputs:
        """The member's output (``probabilities`` or ``quantiles``) for a float32 matrix."""
        ...


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a loaded release: its card entry, runtime and input columns."""

    spec: FamilyMember
    runner: MemberRunner
    columns: npt.NDArray[np.intp] | None
    """Column ``j`` of the member's input is column ``columns[j]`` of the family matrix
    extended by one cluster-code column (index = the family's width); None: the family
    matrix as is (same names, same order)."""
    reads_cluster: bool
    """True when the member takes the cluster code as an input."""
    served: int
    """Quantile members: the output column served; binary members: 1 (P(favourable))."""

    @classmethod
    def of(cls, spec: FamilyMember, runner: MemberRunner, family: FeatureIndex) -> Member:
        """Map the member's feature names onto the family's columns (ValueError if unknown)."""
        cluster = family.width
        columns: list[int] = []
        for name in spec.features:
            if name == CLUSTER_FEATURE:
                columns.append(cluster)
            elif name in family.column:
                columns.append(family.column[name])
            else:
                raise ValueError(f"member {spec.name} reads {name!r}, not a family feature")
        identity = columns == list(range(family.width))
        return cls(
            spec,
            runner,
            None if identity else np.array(columns, dtype=np.intp),
            reads_cluster=cluster in columns,
            served=spec.served_column() if spec.kind == "quantile" else 1,
        )

    def inputs(self, matrix: Matrix, codes: npt.NDArray[np.float32] | None) -> Matrix:
        """The member's input rows from the family rows (and their cluster codes)."""
        if self.columns is None:
            return matrix
        if codes is None or not self.reads_cluster:
            return np.ascontiguousarray(matrix[:, self.columns])
        extended = np.empty((matrix.shape[0], matrix.shape[1] + 1), dtype=np.float32)
        extended[:, :-1] = matrix
        extended[:, -1] = codes
        return np.ascontiguousarray(extended[:, self.columns])


def _nan_allowed(card: FamilyCard) -> list[str]:
    """A family feature may be NaN only where every member that reads it allows it."""
    allowed: list[str] = []
    for name in card.features:
        readers = [m for m in card.members if name in m.features]
        if readers and all(name in m.nan_allowed for m in readers):
            allowed.append(name)
    return allowed


@dataclass(frozen=True, slots=True)
class LoadedFamily:
    """A release ready to answer: card, members, routing and the family's feature index."""

    deployment: Deployment
    card: FamilyCard
    features: FeatureIndex
    members: dict[str, Member]
    entry: dict[str, Member]
    """Routing: ``H`` / ``M`` / ``L`` → the entry member serving it; ``""`` → pooled."""
    quantile: dict[Head, Member]
    loaded_at: datetime = field(compare=False)
    reads_cluster: bool = False
    """True when some member reads the cluster code (computed once, not per call)."""

    @classmethod
    def build(
        cls,
        deployment: Deployment,
        card: FamilyCard,
        runners: dict[str, MemberRunner],
        *,
        loaded_at: datetime,
    ) -> LoadedFamily:
        """Assemble a release from its card and one runner per member (ValueError if wrong)."""
        features = FeatureIndex.of(card.features, _nan_allowed(card))
        members = {m.name: Member.of(m, runners[m.name], features) for m in card.members}
        entry = {c: members[card.head_member("entry", c).name] for c in (*CLUSTERS, "")}
        quantile: dict[Head, Member] = {}
        for head in QUANTILE_HEADS:
            member = members[card.head_member(head).name]
            if member.spec.kind != "quantile":
                raise ValueError(f"member {member.spec.name} serves {head} but is not quantile")
            quantile[head] = member
        for member in entry.values():
            if member.spec.kind != "binary":
                raise ValueError(f"entry member {member.spec.name} is not binary")
        reads_cluster = any(m.reads_cluster for m in members.values())
        return cls(deployment, card, features, members, entry, quantile, loaded_at, reads_cluster)

    @property
    def name(self) -> str:
        """The family name."""
        return self.deployment.model_name

    @property
    def version(self) -> str:
        """The release, ``v{major}_{minor}_{patch}``."""
        return self.deployment.version

    def with_stage(self, stage: Stage) -> LoadedFamily:
        """The same release under another stage (no reload)."""
        return replace(self, deployment=replace(self.deployment, stage=stage))


@dataclass(frozen=True, slots=True)
class QuantileColumn:
    """A quantile head's answers for a group of rows."""

    member: FamilyMember
    quantiles: list[list[float]]
    """Per row, the value at each of ``member.alphas`` (ascending)."""
    served: list[float]
    """Per row, the value at ``member.served_alpha``."""


@dataclass(frozen=True, slots=True)
class FamilyPredictions:
    """Every head for a group of rows of one release, in row order (columns, no row objects)."""

    conf_pat: list[float]
    entry_members: list[FamilyMember]
    quantile: dict[Head, QuantileColumn]


def cluster_codes(clusters: Sequence[str]) -> npt.NDArray[np.float32]:
    """:data:`CLUSTER_FEATURE` values of the rows: H 2, M 1, L 0, ``""`` (unknown) NaN."""
    return np.array([CLUSTER_CODES.get(c, np.nan) for c in clusters], dtype=np.float32)


def predict_rows(
    release: LoadedFamily, matrix: Matrix, clusters: Sequence[str]
) -> FamilyPredictions:
    """Every head for valid rows (float32, the family's columns) and their clusters.

    One run per member: entry rows are grouped by their routed member, each quantile head
    runs once on every row.
    """
    n = matrix.shape[0]
    codes = cluster_codes(clusters) if release.reads_cluster else None
    routed = [release.entry[c] for c in clusters]
    first = routed[0] if routed else None
    conf = np.empty(n, dtype=np.float64)
    if first is not None and all(m is first for m in routed):
        conf[:] = first.runner.run(first.inputs(matrix, codes))[:, first.served]
    else:
        groups: dict[str, list[int]] = {}
        for i, member in enumerate(routed):
            groups.setdefault(member.spec.name, []).append(i)
        for name, positions in groups.items():
            member = release.members[name]
            rows = np.asarray(positions, dtype=np.intp)
            sub_codes = codes[rows] if codes is not None else None
            conf[rows] = member.runner.run(member.inputs(matrix[rows], sub_codes))[:, member.served]
    quantile: dict[Head, QuantileColumn] = {}
    for head, member in release.quantile.items():
        out = member.runner.run(member.inputs(matrix, codes)).astype(np.float64)
        quantile[head] = QuantileColumn(member.spec, out.tolist(), out[:, member.served].tolist())
    return FamilyPredictions(conf.tolist(), [m.spec for m in routed], quantile)


class FamilyStore(VersionedStore[LoadedFamily]):
    """Every loaded release, and per family the serving (production) release.

    Copy-on-write like :class:`~hindsight.scorer.domain.models.ModelStore`: a call never
    sees a half-installed release.
    """

    def __init__(self, *, default_family: str) -> None:
        self.default_family = default_family
        super().__init__()

    def resolve(self, family: str | None, version: str | None) -> LoadedFamily:
        """The release a call asks for; errors name ``family`` / ``family_version``.

        No release loaded at all, or none serving the family: UNAVAILABLE, the message
        starting "no model" (the gateway's ``no_model`` fallback reads that prefix).
        """
        releases = self._items
        if not releases:
            raise UnavailableError("no model family loaded yet")
        name = family or self.default_family
        if name not in self._names:
            if not family:
                raise UnavailableError(f"no model: the default family {name!r} is not loaded")
            raise InvalidInputError(f"unknown family {truncated(name)!r}", field="family")
        if version:
            found = releases.get((name, version))
            if found is None:
                raise InvalidInputError(
                    f"release {truncated(version)!r} of {truncated(name)!r} is not loaded",
                    field="family_version",
                )
            return found
        default = self._default.get(name)
        if default is None:
            raise UnavailableError(f"no model: no production release of {name!r} is loaded")
        return releases[(name, default)]
