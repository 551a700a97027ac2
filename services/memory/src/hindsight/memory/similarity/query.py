"""``Nearest``: the k stored windows most similar to a query embedding, point in time.

Only windows whose outcome was known at or before ``as_of`` (and that ended by then) are
candidates. The HNSW index answers with ``hnsw.ef_search`` 64 and pgvector's iterative scan
(``relaxed_order``), so a filter that discards most of the nearest rows still yields k; a
materialised CTE restores strict order, as pgvector's documentation advises for
relaxed_order. Should the iterative scan still stop short of k (it gives up after
``hnsw.max_scan_tuples``), the same query runs again without the index, so a query returns
k rows whenever k qualify.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from hindsight.common.errors import (
    ConfigurationError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from hindsight.memory.similarity.extension import PGVECTOR_MIN, version_tuple
from hindsight.memory.similarity.records import (
    MAX_K,
    NearestResult,
    Neighbour,
    aware,
    checked_embed,
)
from hindsight.memory.similarity.scores import percentile, sim_conf
from hindsight.memory.similarity.store import PoolSource

__all__ = ["DEFAULT_P", "EF_SEARCH", "SimilarityQuery"]

EF_SEARCH = 64
DEFAULT_P = 0.65


class SimilarityQuery:
    """Reads of ``pattern_embeds``: nearest neighbours with sim_conf and hist_rr_pct."""

    def __init__(self, source: PoolSource) -> None:
        self.source = source
        self._checked = False

    def _pool(self) -> asyncpg.Pool:
        if self.source.pool is None:
            raise UnavailableError("database not connected")
        return self.source.pool

    async def check_extension(self) -> str:
        """pgvector's installed version; ConfigurationError when it has no iterative scans."""
        version = await self._pool().fetchval(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        )
        if version is None:
            raise ConfigurationError('PostgreSQL extension "vector" (pgvector) is not installed')
        if version_tuple(version) < PGVECTOR_MIN:
            raise ConfigurationError(
                f'PostgreSQL extension "vector" is {version}; iterative index scans need 0.8.0'
            )
        self._checked = True
        return str(version)

    async def nearest(
        self,
        embed: Sequence[float] | None,
        k: int,
        *,
        as_of: datetime,
        symbol: str | None = None,
        timeframe: str | None = None,
        pattern: str | None = None,
        end: datetime | None = None,
        p: float = DEFAULT_P,
        exact: bool = False,
    ) -> NearestResult:
        """The ``k`` nearest stored windows known by ``as_of``, most similar first.

        Without ``embed`` the query is the stored window of ``symbol`` + ``timeframe`` that
        ends at ``end`` (default ``as_of``); that window itself is never its own neighbour.
        ``exact`` skips the index (a brute-force scan: the reference for recall).
        """
        if isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k must lie within [1, {MAX_K}]", field="k")
        aware(as_of, field="as_of")
        percentile([], p)  # rejects a p outside [0, 1] before any I/O
        for name, value in (("symbol", symbol), ("timeframe", timeframe), ("pattern", pattern)):
            if value is not None and not value.strip():
                raise InvalidInputError(f"{name} must not be empty when given", field=name)
        if not self._checked:
            await self.check_extension()
        exclude: str | None = None
        if embed is None:
            query, exclude = await self._stored_window(symbol, timeframe, end or as_of)
        else:
            query = checked_embed(embed)
        sql, args = _sql(query, k, as_of, symbol, timeframe, pattern, exclude)
        async with self._pool().acquire() as conn:
            rows = [] if exact else await _run(conn, sql, args, k, index=True)
            if exact or len(rows) < k:
                rows = await _run(conn, sql, args, k, index=False)
                exact = True
        neighbours = tuple(
            Neighbour(
                signal_id=r["signal_id"],
                similarity=1.0 - float(r["distance"]),
                pattern=r["pattern"],
                quality=float(r["quality"]),
                realised_r=None if r["realised_r"] is None else float(r["realised_r"]),
                ts=r["ts"],
                symbol=r["symbol"],
                timeframe=r["timeframe"],
                outcome_known_at=r["outcome_known_at"],
            )
            for r in rows
        )
        realised = [n.realised_r for n in neighbours if n.realised_r is not None]
        return NearestResult(
            neighbours=neighbours,
            sim_conf=sim_conf([n.quality for n in neighbours], [n.similarity for n in neighbours]),
            hist_rr_pct=percentile(realised, p),
            exact=exact,
        )

    async def _stored_window(
        self, symbol: str | None, timeframe: str | None, end: datetime
    ) -> tuple[tuple[float, ...], str]:
        if symbol is None or timeframe is None:
            field = "symbol" if symbol is None else "timeframe"
            raise InvalidInputError(
                "without embed, symbol + timeframe (+ end) name the query window", field=field
            )
        aware(end, field="end")
        row = await self._pool().fetchrow(
            """SELECT signal_id, embed::real[] AS embed FROM pattern_embeds
               WHERE symbol = $1 AND timeframe = $2 AND ts = $3
               ORDER BY signal_id LIMIT 1""",
            symbol,
            timeframe,
            end,
        )
        if row is None:
            raise NotFoundError(f"no stored window of {symbol} {timeframe} ending at {end}")
        return tuple(row["embed"]), row["signal_id"]


def _sql(
    query: tuple[float, ...],
    k: int,
    as_of: datetime,
    symbol: str | None,
    timeframe: str | None,
    pattern: str | None,
    exclude: str | None,
) -> tuple[str, list[object]]:
    # Only the filters given enter the WHERE clause (fixed fragments, values as parameters):
    # "($n IS NULL OR col = $n)" would leave a generic plan that no index serves.
    args: list[object] = [list(query), as_of, k]
    where = ["outcome_known_at <= $2", "ts <= $2"]
    for column, value, op in (
        ("symbol", symbol, "="),
        ("timeframe", timeframe, "="),
        ("pattern", pattern, "="),
        ("signal_id", exclude, "<>"),
    ):
        if value is not None:
            args.append(value)
            where.append(f"{column} {op} ${len(args)}")
    sql = f"""
        WITH relaxed AS MATERIALIZED (
            SELECT signal_id, symbol, timeframe, ts, pattern, quality, realised_r,
                   outcome_known_at, embed <=> $1::real[]::vector(64) AS distance
            FROM pattern_embeds
            WHERE {" AND ".join(where)}
            ORDER BY distance
            LIMIT $3)
        SELECT * FROM relaxed ORDER BY distance + 0, signal_id"""
    return sql, args


async def _run(
    conn: asyncpg.Connection, sql: str, args: list[object], k: int, *, index: bool
) -> list[asyncpg.Record]:
    async with conn.transaction():
        if index:
            # ef_search must cover k, or a plain scan returns fewer than k rows.
            await conn.execute(
                f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}; "
                "SET LOCAL hnsw.iterative_scan = relaxed_order"
            )
        else:
            # No index scan: the HNSW index cannot answer, a btree bitmap scan still may.
            await conn.execute("SET LOCAL enable_indexscan = off")
        return list(await conn.fetch(sql, *args))
