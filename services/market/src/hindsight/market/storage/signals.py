"""Statements over ``pending_signals`` and ``labels`` (the Back-Labeler's state)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

import asyncpg

from hindsight.market.domain.labels import SignalLabels
from hindsight.market.storage.records import PendingSignal

__all__ = ["SignalTable"]


def _pending(row: asyncpg.Record) -> PendingSignal:
    return PendingSignal(
        signal_id=row["signal_id"],
        label_spec=row["label_spec"],
        symbol=row["symbol"],
        timeframe=row["timeframe"],
        side=row["side"],
        ts=row["ts"],
        entry_price=row["entry_price"],
    )


class SignalTable:
    """The Back-Labeler's statements; every method runs on the caller's connection."""

    async def add_pending(
        self, conn: asyncpg.Connection | asyncpg.Pool, signals: Sequence[PendingSignal]
    ) -> int:
        """Queue signals not labelled yet under their spec (one statement); how many new."""
        if not signals:
            return 0
        status = await conn.execute(
            """INSERT INTO pending_signals (signal_id, label_spec, symbol, timeframe, side, ts,
                                            entry_price)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::timestamptz[], $7::float8[])
                   AS u(signal_id, label_spec, symbol, timeframe, side, ts, entry_price)
               WHERE NOT EXISTS (SELECT 1 FROM labels l
                                 WHERE l.signal_id = u.signal_id AND l.label_spec = u.label_spec)
               ON CONFLICT (signal_id, label_spec) DO NOTHING""",
            [s.signal_id for s in signals],
            [s.label_spec for s in signals],
            [s.symbol for s in signals],
            [s.timeframe for s in signals],
            [s.side for s in signals],
            [s.ts for s in signals],
            [s.entry_price for s in signals],
        )
        return int(status.rsplit(" ", 1)[-1])

    async def pending_series(self, conn: asyncpg.Pool) -> list[tuple[str, str]]:
        """Every series with a signal waiting."""
        rows = await conn.fetch(
            "SELECT DISTINCT symbol, timeframe FROM pending_signals WHERE failed_at IS NULL"
        )
        return [(r["symbol"], r["timeframe"]) for r in rows]

    async def pending(
        self, conn: asyncpg.Pool, symbol: str, timeframe: str, *, label_spec: str, limit: int
    ) -> list[PendingSignal]:
        """The series' waiting signals, oldest first."""
        rows = await conn.fetch(
            """SELECT * FROM pending_signals
               WHERE symbol=$1 AND timeframe=$2 AND label_spec=$3 AND failed_at IS NULL
               ORDER BY ts, signal_id LIMIT $4""",
            symbol,
            timeframe,
            label_spec,
            limit,
        )
        return [_pending(r) for r in rows]

    async def count_pending(self, conn: asyncpg.Pool) -> tuple[int, int]:
        """(waiting, failed) signals."""
        row = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE failed_at IS NULL) AS waiting,
                      count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
               FROM pending_signals"""
        )
        assert row is not None
        return int(row["waiting"]), int(row["failed"])

    async def fail(
        self, conn: asyncpg.Connection | asyncpg.Pool, signal: PendingSignal, error: str
    ) -> None:
        """The signal can never be labelled: keep it, with why, and stop trying."""
        await conn.execute(
            """UPDATE pending_signals SET failed_at=now(), error=$3
               WHERE signal_id=$1 AND label_spec=$2""",
            signal.signal_id,
            signal.label_spec,
            error[:2000],
        )

    async def save_labels(
        self,
        conn: asyncpg.Connection,
        labelled: Sequence[tuple[PendingSignal, SignalLabels, str | None]],
    ) -> set[str]:
        """Insert the labels (once per signal and spec) and drop the pending rows; the ids
        whose label is new in this transaction (the caller queues their events)."""
        if not labelled:
            return set()
        rows = await conn.fetch(
            """INSERT INTO labels (signal_id, label_spec, symbol, timeframe, side, signal_ts,
                                   labels, liquidity_cluster)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::timestamptz[], $7::jsonb[], $8::text[])
               ON CONFLICT (signal_id, label_spec) DO NOTHING
               RETURNING signal_id""",
            [p.signal_id for p, _, _ in labelled],
            [p.label_spec for p, _, _ in labelled],
            [p.symbol for p, _, _ in labelled],
            [p.timeframe for p, _, _ in labelled],
            [p.side for p, _, _ in labelled],
            [p.ts for p, _, _ in labelled],
            [json.dumps(asdict(labels)) for _, labels, _ in labelled],
            [cluster for _, _, cluster in labelled],
        )
        await conn.execute(
            """DELETE FROM pending_signals p USING unnest($1::text[], $2::text[]) AS u(id, spec)
               WHERE p.signal_id = u.id AND p.label_spec = u.spec""",
            [p.signal_id for p, _, _ in labelled],
            [p.label_spec for p, _, _ in labelled],
        )
        return {r["signal_id"] for r in rows}

    async def count_labels(self, conn: asyncpg.Pool) -> int:
        """Labels stored (every spec)."""
        return int(await conn.fetchval("SELECT count(*) FROM labels"))
