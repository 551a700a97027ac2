"""The ``versions`` table: every registered version, its stage, headline and gate verdict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from hindsight.common.registry_api import ModelSummary
from hindsight.registry.domain import GateCheck, Headline, Stage, VersionKind
from hindsight.registry.storage.base import Executor, JsonObject, Row

__all__ = [
    "Deployment",
    "ModelSummary",
    "NewVersion",
    "ProductionCard",
    "StageCount",
    "VersionRecord",
    "VersionWithCard",
    "Versions",
]

_COLUMNS = """model_name, version, kind, stage, training_run_id, created_at, registered_at,
    stage_changed_at, artifact_uri, sha256, headline, gates, gates_passed, refused_reason"""
_JSON = ("headline", "gates")


class VersionRecord(Row):
    """A registered version, without its card."""

    model_name: str
    version: str
    kind: VersionKind = "model"
    """``family``: a family release (``families/...``), gated member by member."""
    stage: Stage
    training_run_id: str
    created_at: datetime
    registered_at: datetime
    stage_changed_at: datetime
    artifact_uri: str
    sha256: str
    headline: Headline
    gates: list[GateCheck]
    gates_passed: bool
    refused_reason: str | None


class VersionWithCard(VersionRecord):
    """A version with its full ``metrics.json`` (None for a refused version)."""

    card: JsonObject | None


class ProductionCard(Row):
    """A production version and its card (what the degradation monitor compares with)."""

    model_name: str
    version: str
    card: JsonObject | None


class Deployment(Row):
    """A production version, as scorers and the trainer read it."""

    model_name: str
    version: str
    stage: Stage
    artifact_uri: str
    sha256: str


class StageCount(Row):
    """How many versions of a model are in a stage."""

    model_name: str
    stage: Stage
    n: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NewVersion:
    """A version to register."""

    model_name: str
    version: str
    stage: Stage
    training_run_id: str
    created_at: datetime
    artifact_uri: str
    sha256: str
    card: JsonObject | None
    headline: Headline
    gates: Sequence[GateCheck]
    gates_passed: bool
    refused_reason: str | None
    kind: VersionKind = "model"


def _gates_json(gates: Sequence[GateCheck]) -> str:
    return json.dumps([asdict(g) for g in gates])


class Versions:
    """Statements over ``versions`` (on the pool or inside a locked transaction)."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def get(
        self, model_name: str, version: str, *, lock: bool = False
    ) -> VersionRecord | None:
        """One version (without the card); ``lock``: FOR UPDATE, inside a transaction."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM versions WHERE model_name=$1 AND version=$2"
            + (" FOR UPDATE" if lock else ""),
            model_name,
            version,
        )
        return VersionRecord.of(row, *_JSON) if row else None

    async def with_card(self, model_name: str, version: str) -> VersionWithCard | None:
        """One version with its card."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS}, card FROM versions WHERE model_name=$1 AND version=$2",
            model_name,
            version,
        )
        return VersionWithCard.of(row, *_JSON, "card") if row else None

    async def production(self, model_name: str) -> VersionRecord | None:
        """The production version of a model, if any."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM versions WHERE model_name=$1 AND stage='production'",
            model_name,
        )
        return VersionRecord.of(row, *_JSON) if row else None

    async def insert(self, new: NewVersion) -> bool:
        """Insert a version; False when (model_name, version) exists already."""
        inserted = await self.db.fetchval(
            """INSERT INTO versions (model_name, version, stage, training_run_id, created_at,
                   artifact_uri, sha256, card, headline, gates, gates_passed, refused_reason,
                   kind)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9::jsonb,$10::jsonb,$11,$12,$13)
               ON CONFLICT (model_name, version) DO NOTHING RETURNING true""",
            new.model_name,
            new.version,
            str(new.stage),
            new.training_run_id,
            new.created_at,
            new.artifact_uri,
            new.sha256,
            json.dumps(new.card) if new.card is not None else None,
            json.dumps(new.headline),
            _gates_json(new.gates),
            new.gates_passed,
            new.refused_reason,
            new.kind,
        )
        return bool(inserted)

    async def set_stage(self, model_name: str, version: str, stage: Stage) -> None:
        """Move a version to ``stage``."""
        await self.db.execute(
            "UPDATE versions SET stage=$3, stage_changed_at=now() "
            "WHERE model_name=$1 AND version=$2",
            model_name,
            version,
            str(stage),
        )

    async def set_gates(
        self, model_name: str, version: str, gates: Sequence[GateCheck], passed: bool
    ) -> None:
        """Store the latest gate verdict of a version."""
        await self.db.execute(
            "UPDATE versions SET gates=$3::jsonb, gates_passed=$4 "
            "WHERE model_name=$1 AND version=$2",
            model_name,
            version,
            _gates_json(gates),
            passed,
        )

    async def stages(self, model_name: str) -> dict[str, Stage]:
        """version -> stage of every version of a model."""
        rows = await self.db.fetch(
            "SELECT version, stage FROM versions WHERE model_name=$1", model_name
        )
        return {r["version"]: Stage(r["stage"]) for r in rows}

    async def kinds(self, model_name: str) -> set[VersionKind]:
        """The kinds of the versions registered under ``model_name`` (empty when none)."""
        rows = await self.db.fetch(
            "SELECT DISTINCT kind FROM versions WHERE model_name=$1", model_name
        )
        return {r["kind"] for r in rows}

    async def exists(self, model_name: str, version: str) -> bool:
        """True when the version is registered (in any stage)."""
        found = await self.db.fetchval(
            "SELECT true FROM versions WHERE model_name=$1 AND version=$2", model_name, version
        )
        return bool(found)

    async def count(self, model_name: str) -> int:
        """How many versions of ``model_name`` are registered (any stage)."""
        return int(
            await self.db.fetchval("SELECT count(*) FROM versions WHERE model_name=$1", model_name)
        )

    async def of_model(self, model_name: str) -> list[VersionRecord]:
        """Versions of a model, newest first."""
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM versions WHERE model_name=$1 "
            "ORDER BY created_at DESC, version DESC",
            model_name,
        )
        return [VersionRecord.of(r, *_JSON) for r in rows]

    async def models(self) -> list[ModelSummary]:
        """Every model with its production version and number of versions."""
        rows = await self.db.fetch(
            """SELECT model_name, count(*) AS versions,
                      max(version) FILTER (WHERE stage='production') AS production_version
               FROM versions GROUP BY model_name ORDER BY model_name"""
        )
        return [ModelSummary.of(r) for r in rows]

    async def deployments(self) -> list[Deployment]:
        """Every production version."""
        rows = await self.db.fetch(
            """SELECT model_name, version, stage, artifact_uri, sha256 FROM versions
               WHERE stage='production' ORDER BY model_name"""
        )
        return [Deployment.of(r) for r in rows]

    async def stage_counts(self) -> list[StageCount]:
        """(model_name, stage, n) for every pair present."""
        rows = await self.db.fetch(
            "SELECT model_name, stage, count(*) AS n FROM versions GROUP BY 1, 2 ORDER BY 1, 2"
        )
        return [StageCount.of(r) for r in rows]

    async def best_candidates(self, limit: int = 5) -> list[VersionRecord]:
        """Candidate and staging versions with the highest test ROC-AUC."""
        rows = await self.db.fetch(
            f"""SELECT {_COLUMNS} FROM versions
                WHERE stage IN ('candidate', 'staging')
                ORDER BY (headline->>'test_roc_auc')::double precision DESC NULLS LAST
                LIMIT $1""",
            limit,
        )
        return [VersionRecord.of(r, *_JSON) for r in rows]

    async def production_cards(self) -> list[ProductionCard]:
        """model_name, version, card of every production version."""
        rows = await self.db.fetch(
            "SELECT model_name, version, card FROM versions WHERE stage='production' "
            "ORDER BY model_name"
        )
        return [ProductionCard.of(r, "card") for r in rows]
