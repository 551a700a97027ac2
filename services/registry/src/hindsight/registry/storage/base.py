"""What the registry's table modules share: the row base class and JSON columns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Self, TypeAlias

import asyncpg
from pydantic import BaseModel, ConfigDict

__all__ = ["Executor", "JsonObject", "Row"]

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection
"""The pool (reads) or one transaction's connection: both fetch, fetchrow, fetchval, execute."""

JsonObject: TypeAlias = dict[str, Any]
"""Schemaless JSON, stored and served as written: a version's full ``metrics.json`` (checked as
a ModelCard at registration, but every extra field is kept and its ``metrics`` are free-form;
the gates read several layouts of them)."""


class Row(BaseModel):
    """A typed, immutable row; :meth:`of` reads an asyncpg record, parsing its JSON columns."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of(cls, record: Mapping[str, Any], *json_columns: str) -> Self:
        """The row of ``record``; the ``json_columns`` arrive as text and are parsed first."""
        values = dict(record)
        for column in json_columns:
            if isinstance(values.get(column), str):
                values[column] = json.loads(values[column])
        return cls.model_validate(values)
