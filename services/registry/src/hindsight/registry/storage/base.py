"""What the registry's table modules share: the row base class and JSON columns."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from hindsight.common.registry_api import Row

__all__ = ["Executor", "JsonObject", "Row"]

Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection
"""The pool (reads) or one transaction's connection: both fetch, fetchrow, fetchval, execute."""

JsonObject: TypeAlias = dict[str, Any]
"""Schemaless JSON, stored and served as written: a version's full ``metrics.json`` (checked as
a ModelCard at registration, but every extra field is kept and its ``metrics`` are free-form;
the gates read several layouts of them)."""
