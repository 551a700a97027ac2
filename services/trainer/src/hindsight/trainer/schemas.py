"""Feature schemas from the registry (``GET /v1/feature-schemas/{version}``), cached.

A registered schema never changes, so it is kept for good. A version the registry does not
know is accepted unchecked and asked again after ``unknown_ttl_s``; when the registry does
not answer, events go unchecked (never dropped, never dead-lettered for it) and it is asked
again after ``retry_s``. Each outcome is counted in ``hindsight_trainer_schema_checks_total``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
from pydantic import ValidationError

from hindsight.common.feature_schema import FeatureSchema

__all__ = ["Lookup", "RegistrySchemas"]

logger = logging.getLogger(__name__)

Lookup = Literal["found", "unknown", "unreachable"]


@dataclass(frozen=True, slots=True)
class _Entry:
    state: Lookup
    schema: FeatureSchema | None
    until: float


class RegistrySchemas:
    """``get(version)`` → (found | unknown | unreachable, the schema when found)."""

    def __init__(
        self,
        registry_url: str,
        *,
        unknown_ttl_s: float = 30.0,
        retry_s: float = 5.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.unknown_ttl_s = unknown_ttl_s
        self.retry_s = retry_s
        self.timeout = timeout
        self.clock = clock
        self._cache: dict[int, _Entry] = {}

    async def get(self, version: int) -> tuple[Lookup, FeatureSchema | None]:
        """The schema of ``version`` (cached) and whether the registry had it."""
        now = self.clock()
        entry = self._cache.get(version)
        if entry is None or entry.until <= now:
            entry = await self._fetch(version, now)
            self._cache[version] = entry
        return entry.state, entry.schema

    async def _fetch(self, version: int, now: float) -> _Entry:
        url = f"{self.registry_url}/v1/feature-schemas/{version}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(url)
            if response.status_code == 404:
                return _Entry("unknown", None, now + self.unknown_ttl_s)
            response.raise_for_status()
            body = response.json()
            schema = FeatureSchema(version=body["version"], features=body["features"])
        except (httpx.HTTPError, ValueError, TypeError, KeyError, ValidationError) as exc:
            logger.warning("feature schema v%d unavailable, events go unchecked: %s", version, exc)
            return _Entry("unreachable", None, now + self.retry_s)
        return _Entry("found", schema, float("inf"))
