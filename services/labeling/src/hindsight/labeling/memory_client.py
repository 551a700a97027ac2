"""Memory's HTTP API, for "similar to this": health cached a few seconds, then search."""

from __future__ import annotations

import time

import httpx
from pydantic import BaseModel, ValidationError

from hindsight.common.errors import UnavailableError
from hindsight.common.record_ids import image_vector_id

__all__ = ["MemoryClient"]


class _Hit(BaseModel):
    """What this client reads of a search hit: the vector's metadata (free-form keys)."""

    metadata: dict[str, object] | None = None


class _SearchAnswer(BaseModel):
    """What this client reads of memory's ``POST /v1/search`` answer."""

    results: list[_Hit] = []


class MemoryClient:
    """Asks memory for trades similar to one; knows whether memory is up."""

    def __init__(self, base_url: str, *, health_ttl_s: float = 5.0, timeout: float = 3.0) -> None:
        self.base_url = base_url
        self.health_ttl_s = health_ttl_s
        self._client = httpx.AsyncClient(timeout=timeout)
        self._checked_at = float("-inf")
        self._up = False

    async def start(self) -> None:
        """Nothing to open: the client connects lazily."""

    async def stop(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def is_up(self) -> bool:
        """Whether memory answered ``/healthz`` (cached for ``health_ttl_s``)."""
        now = time.monotonic()
        if now - self._checked_at < self.health_ttl_s:
            return self._up
        try:
            response = await self._client.get(f"{self.base_url}/healthz", timeout=0.5)
            self._up = response.status_code == 200
        except httpx.HTTPError:
            self._up = False
        self._checked_at = now
        return self._up

    async def similar_trades(self, original_path: str, *, k: int = 20) -> list[str]:
        """Trade ids of memory records most like the trade's original chart, best first."""
        body = {"vector_id": image_vector_id(original_path), "collections": ["trade_cases"], "k": k}
        try:
            response = await self._client.post(f"{self.base_url}/v1/search", json=body)
        except httpx.HTTPError as exc:
            self._up = False
            raise UnavailableError(f"memory is not reachable: {exc}") from exc
        if response.status_code != 200:
            raise UnavailableError(f"memory search failed: HTTP {response.status_code}")
        try:
            answer = _SearchAnswer.model_validate_json(response.content)
        except ValidationError as exc:
            raise UnavailableError(f"memory search answered something else: {exc}") from exc
        seen: list[str] = []
        for result in answer.results:
            trade_id = (result.metadata or {}).get("trade_id")
            if isinstance(trade_id, str) and trade_id and trade_id not in seen:
                seen.append(trade_id)
        return seen
