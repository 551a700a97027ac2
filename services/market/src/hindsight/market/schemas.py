"""What market's HTTP API and its NATS request-reply take and answer (pydantic models)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import NonEmptyStr, UtcDatetime, format_validation_error
from hindsight.market.domain.bars import TIMEFRAMES
from hindsight.market.storage import ClusterRecord, GapRecord, LabelRecord, StoredBar

__all__ = [
    "BarPublic",
    "BarWindow",
    "ClusterPublic",
    "GapList",
    "GapPublic",
    "LabelList",
    "LabelPublic",
    "WindowQuery",
    "parse_query",
]

POINT_IN_TIME_RULE: Literal["ts + timeframe <= end"] = "ts + timeframe <= end"


class WindowQuery(BaseModel):
    """A point-in-time window: the last ``n`` bars of a series that had CLOSED by ``end``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: NonEmptyStr
    timeframe: str
    end: UtcDatetime
    """RFC 3339 with a timezone: only bars with ``ts + timeframe <= end`` are returned."""
    n: Annotated[int, Field(ge=1)] = 100

    @field_validator("timeframe")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in TIMEFRAMES:
            raise ValueError(f"{value!r} is not one of {', '.join(TIMEFRAMES)}")
        return value


def parse_query(raw: dict[str, Any], *, max_n: int) -> WindowQuery:
    """A :class:`WindowQuery` from query parameters or a JSON object; ``InvalidInputError``
    naming the (first) failing field."""
    try:
        query = WindowQuery.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        field = ".".join(str(p) for p in errors[0]["loc"]) if errors else None
        raise InvalidInputError(format_validation_error(exc), field=field or None) from exc
    if query.n > max_n:
        raise InvalidInputError(f"must be at most {max_n}, got {query.n}", field="n")
    return query


class BarPublic(BaseModel):
    """One bar of a window, with its derived series (null during their warm-up)."""

    ts: UtcDatetime
    """Open time."""
    close_ts: UtcDatetime
    """Close time (``ts + timeframe``), at or before the window's ``end``."""
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int | None = None
    vwap: float | None = None
    atr14: float | None = None
    ema21: float | None = None
    rsi14: float | None = None
    realised_vol20: float | None = None

    @classmethod
    def of(cls, stored: StoredBar) -> BarPublic:
        """From a stored bar."""
        bar, derived = stored.bar, stored.derived
        return cls(
            ts=bar.ts,
            close_ts=bar.end,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            trades=stored.trades,
            vwap=stored.vwap,
            atr14=derived.atr14,
            ema21=derived.ema21,
            rsi14=derived.rsi14,
            realised_vol20=derived.realised_vol20,
        )


class BarWindow(BaseModel):
    """Body of ``GET /v1/bars`` and of a ``market.bars.window`` reply."""

    symbol: str
    timeframe: str
    end: UtcDatetime
    n: int
    point_in_time: Literal["ts + timeframe <= end"] = POINT_IN_TIME_RULE
    """The rule every bar of ``bars`` satisfies."""
    bars: list[BarPublic]
    """Oldest first; at most ``n``."""
    indicator_version: str | None
    """Version of the derived series' definitions (null when there are no bars)."""
    liquidity_cluster: Literal["H", "M", "L"] | None
    cluster_rule_version: str | None


class GapPublic(BaseModel):
    """Bars a series' calendar expected between two stored bars (reported, never filled)."""

    after: UtcDatetime
    before: UtcDatetime
    missing: int

    @classmethod
    def of(cls, gap: GapRecord) -> GapPublic:
        """From a stored gap."""
        return cls(after=gap.after, before=gap.before, missing=gap.missing)


class GapList(BaseModel):
    """Body of ``GET /v1/gaps``: newest first."""

    symbol: str
    timeframe: str
    gaps: list[GapPublic]


class ClusterPublic(BaseModel):
    """A symbol's liquidity cluster."""

    symbol: str
    cluster: Literal["H", "M", "L"]
    dollar_volume: float
    rule_version: str
    updated_at: UtcDatetime

    @classmethod
    def of(cls, record: ClusterRecord) -> ClusterPublic:
        """From a stored cluster."""
        return cls(
            symbol=record.symbol,
            cluster=record.cluster,
            dollar_volume=record.dollar_volume,
            rule_version=record.rule_version,
            updated_at=record.updated_at,
        )


class LabelPublic(BaseModel):
    """One stored label of a signal under one label spec (the ``signal.labeled`` fields)."""

    signal_id: str
    label_spec: str
    """The label spec's hash: labels of two specs never mix."""
    label_revision: int
    """0 first; +1 each time a corrected bar relabelled it (this is the newest)."""
    symbol: str
    timeframe: str
    side: Literal["buy", "sell"]
    signal_ts: UtcDatetime
    horizon_bars: int
    runup_r: float
    drawdown_r: float
    realised_r: float
    y_entry: int
    t_hit_tp: float | None
    t_hit_sl: float | None
    mfe_atr: float
    mae_atr: float
    mfe_r: float
    mae_r: float
    dd_katr: float
    best_offset_katr: float
    liquidity_cluster: Literal["H", "M", "L"] | None
    labeled_at: UtcDatetime

    @classmethod
    def of(cls, record: LabelRecord) -> LabelPublic:
        """From a stored label."""
        return cls.model_validate(
            {
                **asdict(record.labels),
                "signal_id": record.signal_id,
                "label_spec": record.label_spec,
                "label_revision": record.revision,
                "symbol": record.symbol,
                "timeframe": record.timeframe,
                "side": record.side,
                "signal_ts": record.signal_ts,
                "liquidity_cluster": record.liquidity_cluster,
                "labeled_at": record.labeled_at,
            }
        )


class LabelList(BaseModel):
    """Body of ``GET /v1/labels``: a signal's labels, oldest first."""

    signal_id: str
    labels: list[LabelPublic]
