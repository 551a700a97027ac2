"""Data specs over HTTP: registered once per model and version, persisted, used by runs.

``PUT /v1/data-specs/{model_name}`` mirrors the registry's feature schemas: a version names
one content for good. The same declaration again is accepted and changes nothing (200); a
new version after the model's newest is registered (201); another content under a taken
version, or a version not after the newest, is a conflict (409) naming both. Rows are never
changed or deleted, so every run's spec (recorded in its ``metrics.json``) can be read back.

:class:`DataSpecCatalog` is the mapping runs read (model name → effective spec): the
settings' specs overlaid by each model's newest registered version. It loads the table at
start and takes each registration as it commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hindsight.common.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from hindsight.trainer.domain.data_spec import DataSpec, Target
from hindsight.trainer.storage import Storage

__all__ = ["DataSpecCatalog", "DataSpecCreate", "DataSpecPublic", "DataSpecTable"]


class DataSpecCreate(BaseModel):
    """The body of ``PUT /v1/data-specs/{model_name}``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    version: int = Field(ge=1, le=2**31 - 1)
    """This declaration's version: after the model's newest to register a new one."""
    model_name: str | None = None
    """Optional; when given it must be the path's."""
    feature_schema_version: int = Field(ge=1, le=2**31 - 1)
    """Only signals of this ``feature_schema_version``."""
    symbols: tuple[str, ...] | None = None
    """Only these symbols (omit for every symbol)."""
    timeframes: tuple[str, ...] | None = None
    """Only these timeframes (omit for every timeframe)."""
    target: Target = "realised_outcome"


class DataSpecPublic(BaseModel):
    """A model's data spec as the API shows it."""

    model_name: str
    version: int | None
    """None for a spec declared in the settings."""
    origin: Literal["settings", "api"]
    content_hash: str
    feature_schema_version: int
    symbols: tuple[str, ...] | None
    timeframes: tuple[str, ...] | None
    target: Target
    created_at: datetime | None = None
    created_by: str | None = None

    @classmethod
    def of(
        cls, spec: DataSpec, *, created_at: datetime | None = None, created_by: str | None = None
    ) -> DataSpecPublic:
        """The public view of ``spec``."""
        return cls(
            model_name=spec.model_name,
            version=spec.version,
            origin="settings" if spec.version is None else "api",
            content_hash=spec.content_hash(),
            feature_schema_version=spec.feature_schema_version,
            symbols=spec.symbols,
            timeframes=spec.timeframes,
            target=spec.target,
            created_at=created_at,
            created_by=created_by,
        )


def _spec(row: asyncpg.Record) -> DataSpec:
    return DataSpec.model_validate({**json.loads(row["spec"]), "version": row["version"]})


class DataSpecTable:
    """SQL over ``data_specs`` (schema ``trainer``)."""

    async def lock(self, conn: asyncpg.Connection, model_name: str) -> None:
        """Serialise registrations of one model (until the transaction ends)."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('trainer.data_specs.' || $1, 0))",
            model_name,
        )

    async def newest(self, conn: asyncpg.Connection | asyncpg.Pool) -> list[asyncpg.Record]:
        """Each model's newest version."""
        return list(
            await conn.fetch(
                """SELECT DISTINCT ON (model_name) * FROM data_specs
                   ORDER BY model_name, version DESC"""
            )
        )

    async def get(
        self, conn: asyncpg.Connection | asyncpg.Pool, model_name: str, version: int
    ) -> asyncpg.Record | None:
        """One version of a model's spec."""
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT * FROM data_specs WHERE model_name=$1 AND version=$2", model_name, version
        )
        return row

    async def newest_version(self, conn: asyncpg.Connection, model_name: str) -> int | None:
        """The model's newest registered version."""
        value = await conn.fetchval(
            "SELECT max(version) FROM data_specs WHERE model_name=$1", model_name
        )
        return None if value is None else int(value)

    async def insert(
        self, conn: asyncpg.Connection, spec: DataSpec, *, created_by: str
    ) -> asyncpg.Record:
        """Store ``spec`` (its ``version`` set); the row."""
        body = spec.model_dump(mode="json", exclude={"version"})
        row: asyncpg.Record | None = await conn.fetchrow(
            """INSERT INTO data_specs (model_name, version, spec, content_hash, created_by)
               VALUES ($1, $2, $3::jsonb, $4, $5) RETURNING *""",
            spec.model_name,
            spec.version,
            json.dumps(body, sort_keys=True),
            spec.content_hash(),
            created_by,
        )
        assert row is not None
        return row


class DataSpecCatalog(Mapping[str, DataSpec]):
    """Model name → the spec its runs train on: the newest registered version, else the
    settings' spec. Iterates the model names, sorted."""

    def __init__(self, settings_specs: Mapping[str, DataSpec], storage: Storage) -> None:
        self.settings_specs = dict(settings_specs)
        self.storage = storage
        self.table = DataSpecTable()
        self._registered: dict[str, DataSpec] = {}
        self._rows: dict[str, asyncpg.Record] = {}

    # --- the mapping runs read -------------------------------------------------------------

    def __getitem__(self, model_name: str) -> DataSpec:
        found = self._registered.get(model_name)
        return self.settings_specs[model_name] if found is None else found

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.settings_specs.keys() | self._registered.keys()))

    def __len__(self) -> int:
        return len(self.settings_specs.keys() | self._registered.keys())

    # --- the part: load at start -----------------------------------------------------------

    async def start(self) -> None:
        """Load every model's newest registered version."""
        for row in await self.table.newest(self.storage.pool):
            self._take(row)

    async def stop(self) -> None:
        """Nothing to release."""

    def _take(self, row: asyncpg.Record) -> DataSpec:
        spec = _spec(row)
        current = self._registered.get(spec.model_name)
        if current is None or (current.version or 0) < (spec.version or 0):
            self._registered[spec.model_name] = spec
            self._rows[spec.model_name] = row
        return spec

    # --- the API's use cases ---------------------------------------------------------------

    def describe(self, model_name: str) -> DataSpecPublic:
        """The spec ``model_name``'s runs train on; NotFoundError (404) when it has none."""
        spec = self.get(model_name)
        if spec is None:
            raise NotFoundError(
                f"model {model_name!r} has no data spec (declared: {', '.join(self) or 'none'})"
            )
        row = self._rows.get(model_name) if spec.version is not None else None
        return DataSpecPublic.of(
            spec,
            created_at=None if row is None else row["created_at"],
            created_by=None if row is None else row["created_by"],
        )

    def all(self) -> list[DataSpecPublic]:
        """Every model's effective spec, by model name."""
        return [self.describe(name) for name in self]

    async def register(
        self, model_name: str, body: DataSpecCreate, *, actor: str
    ) -> tuple[DataSpecPublic, bool]:
        """Register ``body`` as ``model_name``'s spec version ``body.version``; the stored
        spec and whether this call created it. InvalidInputError (422) naming the field for
        a bad declaration; AlreadyExistsError (409) for another content under a taken
        version, or a version not after the model's newest."""
        if body.model_name is not None and body.model_name != model_name:
            raise InvalidInputError(
                f"{body.model_name!r} is not the path's {model_name!r}", field="model_name"
            )
        spec = _declared(model_name, body)
        digest = spec.content_hash()
        async with self.storage.pool.acquire() as conn, conn.transaction():
            await self.table.lock(conn, model_name)
            existing = await self.table.get(conn, model_name, body.version)
            if existing is not None:
                if existing["content_hash"] != digest:
                    raise AlreadyExistsError(
                        f"data spec {model_name!r} version {body.version} is registered with "
                        f"content hash {existing['content_hash']}; this declaration hashes to "
                        f"{digest}: register it under a new version"
                    )
                return self._public(existing), False
            newest = await self.table.newest_version(conn, model_name)
            if newest is not None and body.version < newest:
                raise AlreadyExistsError(
                    f"data spec {model_name!r} version {body.version} is not after the newest "
                    f"registered version {newest}: register it under version {newest + 1}"
                )
            row = await self.table.insert(conn, spec, created_by=actor)
        self._take(row)
        return self._public(row), True

    @staticmethod
    def _public(row: asyncpg.Record) -> DataSpecPublic:
        return DataSpecPublic.of(
            _spec(row), created_at=row["created_at"], created_by=row["created_by"]
        )


def _declared(model_name: str, body: DataSpecCreate) -> DataSpec:
    """The domain spec ``body`` declares, or InvalidInputError naming the field."""
    try:
        return DataSpec(
            model_name=model_name,
            version=body.version,
            feature_schema_version=body.feature_schema_version,
            symbols=body.symbols,
            timeframes=body.timeframes,
            target=body.target,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        raise InvalidInputError(str(error["msg"]), field=field) from None
