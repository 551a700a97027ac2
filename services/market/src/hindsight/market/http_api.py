"""HTTP: /healthz /readyz /metrics plus bar windows, gaps, clusters and labels.

Every route declares its response model; bad input is answered 422 with an
:class:`~hindsight.common.http.ErrorBody` naming the field (the same check as NATS).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Query

from hindsight.common.errors import InvalidInputError, NotFoundError
from hindsight.common.http import ErrorBody, Readiness, create_http_app
from hindsight.market.metrics import WINDOW_REQUESTS
from hindsight.market.schemas import BarWindow, ClusterPublic, GapList, LabelList, parse_query
from hindsight.market.service import Market

__all__ = ["create_app"]

SERVICE = "market"
_ERRORS: dict[int | str, dict[str, object]] = {
    422: {"model": ErrorBody, "description": "Bad input; `field` names it."}
}


def _router(market: Market, *, max_n: int) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.get("/bars", response_model=BarWindow, responses=_ERRORS)
    async def bars(
        symbol: Annotated[str | None, Query(description="e.g. EURUSD")] = None,
        timeframe: Annotated[str | None, Query(description="1m 5m 15m 30m 1h 4h 1d 1mo")] = None,
        end: Annotated[
            str | None, Query(description="RFC 3339 with a timezone; bars CLOSED by then")
        ] = None,
        n: Annotated[str | None, Query(description="at most this many bars (default 100)")] = None,
    ) -> BarWindow:
        """The last ``n`` bars of the series that had closed by ``end`` (point in time)."""
        raw = {"symbol": symbol, "timeframe": timeframe, "end": end, "n": n}
        try:
            query = parse_query({k: v for k, v in raw.items() if v is not None}, max_n=max_n)
        except InvalidInputError:
            WINDOW_REQUESTS.labels("http", "invalid").inc()
            raise
        window = await market.window(query)
        WINDOW_REQUESTS.labels("http", "ok").inc()
        return window

    @router.get("/gaps", response_model=GapList, responses=_ERRORS)
    async def gaps(
        symbol: Annotated[str, Query(min_length=1)],
        timeframe: Annotated[str, Query(min_length=1)],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> GapList:
        """Gaps reported for the series (never filled), newest first."""
        return await market.gaps(symbol, timeframe, limit=limit)

    @router.get("/labels", response_model=LabelList, responses=_ERRORS)
    async def labels(
        signal_id: Annotated[str, Query(min_length=1, max_length=256)],
        label_spec: Annotated[
            str | None,
            Query(pattern="^[0-9a-f]{16}$", description="one spec's hash (default: every spec)"),
        ] = None,
    ) -> LabelList:
        """A signal's labels, under one label spec or every spec (oldest first)."""
        return await market.labels(signal_id, label_spec=label_spec)

    @router.get(
        "/clusters/{symbol}",
        response_model=ClusterPublic,
        responses={404: {"model": ErrorBody, "description": "Not ranked yet."}},
    )
    async def cluster(symbol: str) -> ClusterPublic:
        """The symbol's liquidity cluster (H / M / L)."""
        found = await market.cluster(symbol)
        if found is None:
            raise NotFoundError(f"no cluster for {symbol!r} yet")
        return found

    return router


def create_app(*, market: Market, readiness: Readiness, max_window_bars: int) -> FastAPI:
    """The service's FastAPI app."""
    app = create_http_app(service=SERVICE, readiness=readiness)
    app.include_router(_router(market, max_n=max_window_bars))
    return app
