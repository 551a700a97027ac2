"""The ``feature_schemas`` table: each ``feature_schema_version`` declared once, never changed."""

from __future__ import annotations

import json
from datetime import datetime

from hindsight.common.feature_schema import FeatureSchema, FeatureSpec
from hindsight.registry.storage.base import Executor, Row

__all__ = ["FeatureSchemaRecord", "FeatureSchemas"]

_COLUMNS = "version, content_hash, features, created_at, created_by"


class FeatureSchemaRecord(Row):
    """A registered feature schema: its ordered features, their hash, who registered it."""

    version: int
    content_hash: str
    features: list[FeatureSpec]
    created_at: datetime
    created_by: str

    def as_schema(self) -> FeatureSchema:
        """The declaration (what the consumers check events against)."""
        return FeatureSchema(version=self.version, features=self.features)


class FeatureSchemas:
    """Statements over ``feature_schemas``."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def insert(self, schema: FeatureSchema, *, created_by: str) -> FeatureSchemaRecord | None:
        """Store ``schema`` unless its version exists (then None: the caller compares hashes)."""
        row = await self.db.fetchrow(
            f"""INSERT INTO feature_schemas (version, content_hash, features, created_by)
                VALUES ($1, $2, $3::jsonb, $4)
                ON CONFLICT (version) DO NOTHING RETURNING {_COLUMNS}""",
            schema.version,
            schema.content_hash(),
            json.dumps([spec.model_dump(mode="json") for spec in schema.features]),
            created_by,
        )
        return None if row is None else FeatureSchemaRecord.of(row, "features")

    async def get(self, version: int) -> FeatureSchemaRecord | None:
        """One schema, or None."""
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM feature_schemas WHERE version=$1", version
        )
        return None if row is None else FeatureSchemaRecord.of(row, "features")

    async def all(self) -> list[FeatureSchemaRecord]:
        """Every schema, by version."""
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM feature_schemas ORDER BY version")
        return [FeatureSchemaRecord.of(r, "features") for r in rows]
