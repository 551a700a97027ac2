"""Statements over ``bars``, ``bar_corrections``, ``gaps`` and ``clusters``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import asyncpg
import numpy as np
from numpy.typing import NDArray

from hindsight.market.domain.bars import Bar
from hindsight.market.storage.records import (
    BarIn,
    ClusterRecord,
    Derived,
    GapRecord,
    StoredBar,
)

__all__ = ["BarTable"]

_SELECT = """SELECT symbol, timeframe, ts, open, high, low, close, volume, trades, vwap,
                    atr14, ema21, rsi14, realised_vol20, indicator_version FROM bars"""


def _stored(row: asyncpg.Record) -> StoredBar:
    return StoredBar(
        bar=Bar(
            symbol=row["symbol"],
            timeframe=row["timeframe"],
            ts=row["ts"],
            open=row["open"],
            high=row["high"],
            low=row["low"],
            close=row["close"],
            volume=row["volume"],
        ),
        trades=row["trades"],
        vwap=row["vwap"],
        derived=Derived(
            atr14=row["atr14"],
            ema21=row["ema21"],
            rsi14=row["rsi14"],
            realised_vol20=row["realised_vol20"],
            indicator_version=row["indicator_version"],
        ),
    )


def _values(bar: Bar, trades: int | None, vwap: float | None) -> str:
    body = {
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "trades": trades,
        "vwap": vwap,
    }
    return json.dumps(body, sort_keys=True)


class BarTable:
    """The bar statements; every method runs on the caller's connection (or pool)."""

    async def lock_series(
        self, conn: asyncpg.Connection, series: Iterable[tuple[str, str]]
    ) -> None:
        """Serialise writers of the same series until the transaction ends (sorted: no
        deadlock between two writers of several series)."""
        keys = sorted(set(series))
        if keys:  # one pipelined round trip; the locks are taken in this order
            await conn.executemany(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 15))",
                [(f"market.bars:{symbol}:{timeframe}",) for symbol, timeframe in keys],
            )

    async def latest(
        self, conn: asyncpg.Connection, symbol: str, timeframe: str
    ) -> StoredBar | None:
        """The series' last bar (largest ts)."""
        row = await conn.fetchrow(
            f"{_SELECT} WHERE symbol=$1 AND timeframe=$2 ORDER BY ts DESC LIMIT 1",
            symbol,
            timeframe,
        )
        return None if row is None else _stored(row)

    async def before(
        self, conn: asyncpg.Connection, symbol: str, timeframe: str, ts: datetime
    ) -> StoredBar | None:
        """The series' last bar opening before ``ts``."""
        row = await conn.fetchrow(
            f"{_SELECT} WHERE symbol=$1 AND timeframe=$2 AND ts < $3 ORDER BY ts DESC LIMIT 1",
            symbol,
            timeframe,
            ts,
        )
        return None if row is None else _stored(row)

    async def at(
        self, conn: asyncpg.Connection, symbol: str, timeframe: str, ts: Sequence[datetime]
    ) -> dict[datetime, StoredBar]:
        """The stored bars of the series at these open times."""
        rows = await conn.fetch(
            f"{_SELECT} WHERE symbol=$1 AND timeframe=$2 AND ts = ANY($3::timestamptz[])",
            symbol,
            timeframe,
            list(ts),
        )
        return {row["ts"]: _stored(row) for row in rows}

    async def latest_of(
        self, conn: asyncpg.Connection, series: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], StoredBar]:
        """:meth:`latest` of each series that has bars, in one statement."""
        keys = sorted(set(series))
        if not keys:
            return {}
        rows = await conn.fetch(
            f"""SELECT b.* FROM unnest($1::text[], $2::text[]) AS k(symbol, timeframe)
                CROSS JOIN LATERAL ({_SELECT}
                    WHERE symbol=k.symbol AND timeframe=k.timeframe
                    ORDER BY ts DESC LIMIT 1) AS b""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(row["symbol"], row["timeframe"]): _stored(row) for row in rows}

    async def at_keys(
        self, conn: asyncpg.Connection, keys: Sequence[tuple[str, str, datetime]]
    ) -> dict[tuple[str, str, datetime], StoredBar]:
        """The stored bars at these (symbol, timeframe, ts) keys, in one statement."""
        if not keys:
            return {}
        rows = await conn.fetch(
            f"""{_SELECT} WHERE (symbol, timeframe, ts) IN (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]))""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(row["symbol"], row["timeframe"], row["ts"]): _stored(row) for row in rows}

    async def upsert(self, conn: asyncpg.Connection, items: Sequence[BarIn]) -> None:
        """Write ``items`` in one statement; an existing key takes the new values."""
        if not items:
            return
        columns: list[list[object]] = [[] for _ in range(11)]
        for item in items:
            bar = item.bar
            row = (
                bar.symbol,
                bar.timeframe,
                bar.ts,
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                bar.volume,
                item.trades,
                item.vwap,
                item.source,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        await conn.execute(
            """INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume, trades,
                                 vwap, source)
               SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[],
                                    $5::float8[], $6::float8[], $7::float8[], $8::float8[],
                                    $9::bigint[], $10::float8[], $11::text[])
               ON CONFLICT (symbol, timeframe, ts) DO UPDATE SET
                   open=EXCLUDED.open, high=EXCLUDED.high, low=EXCLUDED.low,
                   close=EXCLUDED.close, volume=EXCLUDED.volume, trades=EXCLUDED.trades,
                   vwap=EXCLUDED.vwap, source=EXCLUDED.source, ingested_at=now()""",
            *columns,
        )

    async def audit(
        self, conn: asyncpg.Connection, corrections: Sequence[tuple[StoredBar, BarIn]]
    ) -> None:
        """Keep the values each correction replaced, with the new ones."""
        if not corrections:
            return
        await conn.executemany(
            """INSERT INTO bar_corrections (symbol, timeframe, ts, old_values, new_values, source)
               VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6)""",
            [
                (
                    new.bar.symbol,
                    new.bar.timeframe,
                    new.bar.ts,
                    _values(old.bar, old.trades, old.vwap),
                    _values(new.bar, new.trades, new.vwap),
                    new.source,
                )
                for old, new in corrections
            ],
        )

    async def tail(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        symbol: str,
        timeframe: str,
        *,
        since: datetime,
        context: int,
    ) -> list[StoredBar]:
        """Bars opening at or after ``since``, preceded by up to ``context`` earlier ones."""
        rows = await conn.fetch(
            f"""SELECT * FROM (
                    ({_SELECT} WHERE symbol=$1 AND timeframe=$2 AND ts < $3
                     ORDER BY ts DESC LIMIT $4)
                    UNION ALL
                    ({_SELECT} WHERE symbol=$1 AND timeframe=$2 AND ts >= $3)
                ) AS b ORDER BY ts""",
            symbol,
            timeframe,
            since,
            context,
        )
        return [_stored(row) for row in rows]

    async def tail_columns(
        self,
        conn: asyncpg.Connection,
        symbol: str,
        timeframe: str,
        *,
        since: datetime,
        context: int,
    ) -> tuple[list[datetime], NDArray[np.float64]]:
        """:meth:`tail`'s bars as open times and one float64 row per bar (open, high, low,
        close, volume), no object per bar."""
        rows = await conn.fetch(
            """SELECT * FROM (
                   (SELECT ts, open, high, low, close, volume FROM bars
                    WHERE symbol=$1 AND timeframe=$2 AND ts < $3 ORDER BY ts DESC LIMIT $4)
                   UNION ALL
                   (SELECT ts, open, high, low, close, volume FROM bars
                    WHERE symbol=$1 AND timeframe=$2 AND ts >= $3)
               ) AS b ORDER BY ts""",
            symbol,
            timeframe,
            since,
            context,
        )
        values = np.array([tuple(row)[1:] for row in rows], dtype=np.float64).reshape(-1, 5)
        return [row["ts"] for row in rows], values

    async def correction_marks(
        self, conn: asyncpg.Connection, series: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], int]:
        """Per series, the id of its last correction (0: none); one statement."""
        keys = sorted(set(series))
        if not keys:
            return {}
        rows = await conn.fetch(
            """SELECT k.symbol, k.timeframe,
                      (SELECT coalesce(max(c.id), 0) FROM bar_corrections c
                       WHERE c.symbol = k.symbol AND c.timeframe = k.timeframe) AS mark
               FROM unnest($1::text[], $2::text[]) AS k(symbol, timeframe)""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {(row["symbol"], row["timeframe"]): int(row["mark"]) for row in rows}

    async def set_derived(
        self,
        conn: asyncpg.Connection,
        keys: Sequence[tuple[str, str, datetime]],
        *,
        atr14: Sequence[float | None],
        ema21: Sequence[float | None],
        rsi14: Sequence[float | None],
        realised_vol20: Sequence[float | None],
        indicator_version: str,
    ) -> None:
        """Write the derived series of the bars at these (symbol, timeframe, ts) keys (one
        statement, any number of series)."""
        if not keys:
            return
        await conn.execute(
            """UPDATE bars AS b SET atr14=u.atr14, ema21=u.ema21, rsi14=u.rsi14,
                      realised_vol20=u.vol, indicator_version=$8
               FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::float8[],
                           $5::float8[], $6::float8[], $7::float8[])
                    AS u(symbol, timeframe, ts, atr14, ema21, rsi14, vol)
               WHERE b.symbol=u.symbol AND b.timeframe=u.timeframe AND b.ts=u.ts""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            list(atr14),
            list(ema21),
            list(rsi14),
            list(realised_vol20),
            indicator_version,
        )

    async def window(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        symbol: str,
        timeframe: str,
        *,
        opened_by: datetime,
        n: int,
    ) -> list[StoredBar]:
        """The last ``n`` bars opening at or before ``opened_by``, oldest first."""
        rows = await conn.fetch(
            f"""SELECT * FROM ({_SELECT} WHERE symbol=$1 AND timeframe=$2 AND ts <= $3
                               ORDER BY ts DESC LIMIT $4) AS b ORDER BY ts""",
            symbol,
            timeframe,
            opened_by,
            n,
        )
        return [_stored(row) for row in rows]

    async def insert_gaps(self, conn: asyncpg.Connection, gaps: Sequence[GapRecord]) -> None:
        """Record reported gaps (a gap already known is kept as it was)."""
        if not gaps:
            return
        await conn.executemany(
            """INSERT INTO gaps (symbol, timeframe, gap_start, gap_end, missing_bars)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            [(g.symbol, g.timeframe, g.after, g.before, g.missing) for g in gaps],
        )

    async def gaps(
        self, conn: asyncpg.Pool, symbol: str, timeframe: str, *, limit: int
    ) -> list[GapRecord]:
        """The series' reported gaps, newest first."""
        rows = await conn.fetch(
            """SELECT symbol, timeframe, gap_start, gap_end, missing_bars FROM gaps
               WHERE symbol=$1 AND timeframe=$2 ORDER BY gap_start DESC LIMIT $3""",
            symbol,
            timeframe,
            limit,
        )
        return [
            GapRecord(r["symbol"], r["timeframe"], r["gap_start"], r["gap_end"], r["missing_bars"])
            for r in rows
        ]

    async def daily_dollar_volumes(
        self, conn: asyncpg.Pool, *, days: int, preferred: Sequence[str]
    ) -> dict[str, list[float]]:
        """Per symbol, the dollar volume (sum of close × volume) of each of its last ``days``
        UTC days, oldest first, from one timeframe per symbol: the first of ``preferred``
        (longest bars first) it has, so no volume is counted twice. A ``1mo`` bar counts as
        its month's mean day (its dollar volume over the month's days), so a symbol with
        monthly bars only still ranks against daily ones."""
        rows = await conn.fetch(
            """WITH series AS (
                   SELECT DISTINCT ON (symbol) symbol, timeframe, last FROM (
                       SELECT symbol, timeframe, max(ts) AS last FROM bars GROUP BY 1, 2
                   ) AS s ORDER BY symbol, array_position($1::text[], timeframe)
               )
               SELECT s.symbol, date_trunc('day', b.ts AT TIME ZONE 'UTC') AS day,
                      sum(b.close * b.volume / CASE WHEN b.timeframe = '1mo'
                          THEN extract(day FROM ((b.ts AT TIME ZONE 'UTC') + interval '1 month')
                                                - (b.ts AT TIME ZONE 'UTC'))
                          ELSE 1 END) AS dollar_volume
               FROM series s JOIN bars b ON b.symbol = s.symbol AND b.timeframe = s.timeframe
               WHERE b.ts > s.last - $2::interval
               GROUP BY 1, 2 ORDER BY 1, 2""",
            list(preferred),
            timedelta(days=days),
        )
        out: dict[str, list[float]] = {}
        for row in rows:
            out.setdefault(row["symbol"], []).append(float(row["dollar_volume"]))
        return {symbol: values[-days:] for symbol, values in out.items()}

    async def replace_clusters(
        self,
        conn: asyncpg.Pool,
        clusters: dict[str, str],
        dollar_volume: dict[str, float],
        *,
        rule_version: str,
    ) -> None:
        """Store each symbol's cluster (and the dollar volume it was ranked by)."""
        await conn.executemany(
            """INSERT INTO clusters (symbol, cluster, dollar_volume, rule_version)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (symbol) DO UPDATE SET cluster=EXCLUDED.cluster,
                   dollar_volume=EXCLUDED.dollar_volume, rule_version=EXCLUDED.rule_version,
                   updated_at=now()""",
            [(s, c, dollar_volume[s], rule_version) for s, c in clusters.items()],
        )

    async def cluster(self, conn: asyncpg.Pool, symbol: str) -> ClusterRecord | None:
        """The symbol's liquidity cluster, if ranked yet."""
        row = await conn.fetchrow(
            """SELECT symbol, cluster, dollar_volume, rule_version, updated_at FROM clusters
               WHERE symbol=$1""",
            symbol,
        )
        if row is None:
            return None
        return ClusterRecord(
            row["symbol"],
            row["cluster"],
            row["dollar_volume"],
            row["rule_version"],
            row["updated_at"],
        )
