"""Feature schemas: register a ``feature_schema_version`` once, read them back.

A version names one ordered list of features for good: the same declaration again is
accepted and changes nothing, a different one under a taken version is a conflict (two
producers can no longer send different lists under one number). The row and its audit row
commit in one transaction.
"""

from __future__ import annotations

import logging

from hindsight.common.errors import NotFoundError
from hindsight.common.feature_schema import FeatureSchema
from hindsight.registry.domain import ConflictError
from hindsight.registry.storage import FeatureSchemaRecord, Store

__all__ = ["REGISTER_ACTION", "FeatureSchemaCatalog"]

logger = logging.getLogger(__name__)

REGISTER_ACTION = "register_feature_schema"


class FeatureSchemaCatalog:
    """Use cases of feature schemas over :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def register(
        self, schema: FeatureSchema, *, actor: str
    ) -> tuple[FeatureSchemaRecord, bool]:
        """Store ``schema`` once; the stored record and whether this call created it.

        ConflictError (409) when the version holds other features, naming both hashes.
        """
        digest = schema.content_hash()
        async with self.store.transaction() as tx:
            created = await tx.feature_schemas.insert(schema, created_by=actor)
            if created is not None:
                await tx.audit.append_feature_schema(
                    actor=actor,
                    action=REGISTER_ACTION,
                    version=schema.version,
                    reason=f"{len(schema.features)} features, content hash {digest}",
                )
        if created is not None:
            logger.info(
                "feature schema registered",
                extra={"feature_schema_version": schema.version, "content_hash": digest},
            )
            return created, True
        # Rows are never deleted: the one the insert conflicted with is there.
        existing = await self.get(schema.version)
        if existing.content_hash != digest:
            raise ConflictError(
                f"feature schema version {schema.version} is registered with content hash "
                f"{existing.content_hash}; this declaration hashes to {digest}: register "
                "it under a new version"
            )
        return existing, False

    async def get(self, version: int) -> FeatureSchemaRecord:
        """One registered schema; NotFoundError (404) when the version is not registered."""
        record = await self.store.tables.feature_schemas.get(version)
        if record is None:
            raise NotFoundError(f"feature schema version {version} is not registered")
        return record

    async def all(self) -> list[FeatureSchemaRecord]:
        """Every registered schema, by version."""
        return await self.store.tables.feature_schemas.all()
