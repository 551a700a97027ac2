"""Statements over ``pending_signals`` and ``labels`` (the Back-Labeler's state)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

import asyncpg

from hindsight.market.domain.labels import SignalLabels
from hindsight.market.storage.records import (
    CorrectionMark,
    LabelRecord,
    LabelRow,
    PendingSignal,
    StoredLabel,
)

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

    async def adopt(self, conn: asyncpg.Connection | asyncpg.Pool, *, label_spec: str) -> int:
        """Queue under ``label_spec`` every signal known under another spec (labelled or
        pending) that has no label under it yet (one statement); how many were queued. So a
        changed spec labels every signal again under its own hash; the old labels stay."""
        status = await conn.execute(
            """INSERT INTO pending_signals (signal_id, label_spec, symbol, timeframe, side, ts,
                                            entry_price)
               SELECT DISTINCT ON (s.signal_id) s.signal_id, $1, s.symbol, s.timeframe, s.side,
                      s.ts, s.entry_price
               FROM (SELECT signal_id, symbol, timeframe, side, signal_ts AS ts, entry_price
                     FROM labels WHERE label_spec <> $1
                     UNION ALL
                     SELECT signal_id, symbol, timeframe, side, ts, entry_price
                     FROM pending_signals WHERE label_spec <> $1) AS s
               WHERE NOT EXISTS (SELECT 1 FROM labels l
                                 WHERE l.signal_id = s.signal_id AND l.label_spec = $1)
               ORDER BY s.signal_id
               ON CONFLICT (signal_id, label_spec) DO NOTHING""",
            label_spec,
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

    async def save_labels(self, conn: asyncpg.Connection, labelled: Sequence[LabelRow]) -> set[str]:
        """Insert the labels (once per signal and spec, revision 0) and drop the pending
        rows; the ids whose label is new in this transaction (the caller queues their
        events)."""
        if not labelled:
            return set()
        rows = await conn.fetch(
            """INSERT INTO labels (signal_id, label_spec, symbol, timeframe, side, signal_ts,
                                   labels, liquidity_cluster, entry_price, window_start,
                                   window_end)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                    $6::timestamptz[], $7::jsonb[], $8::text[], $9::float8[],
                                    $10::timestamptz[], $11::timestamptz[])
               ON CONFLICT (signal_id, label_spec) DO NOTHING
               RETURNING signal_id""",
            [r.signal.signal_id for r in labelled],
            [r.signal.label_spec for r in labelled],
            [r.signal.symbol for r in labelled],
            [r.signal.timeframe for r in labelled],
            [r.signal.side for r in labelled],
            [r.signal.ts for r in labelled],
            [json.dumps(asdict(r.labels)) for r in labelled],
            [r.cluster for r in labelled],
            [r.signal.entry_price for r in labelled],
            [r.window_start for r in labelled],
            [r.window_end for r in labelled],
        )
        await conn.execute(
            """DELETE FROM pending_signals p USING unnest($1::text[], $2::text[]) AS u(id, spec)
               WHERE p.signal_id = u.id AND p.label_spec = u.spec""",
            [r.signal.signal_id for r in labelled],
            [r.signal.label_spec for r in labelled],
        )
        return {r["signal_id"] for r in rows}

    async def unchecked_corrections(
        self, conn: asyncpg.Connection, *, limit: int
    ) -> list[CorrectionMark]:
        """Corrected bars not checked against the labels yet, oldest first, locked for this
        transaction (another labeler skips them)."""
        rows = await conn.fetch(
            """SELECT id, symbol, timeframe, ts FROM bar_corrections
               WHERE relabel_checked_at IS NULL ORDER BY id LIMIT $1
               FOR UPDATE SKIP LOCKED""",
            limit,
        )
        return [CorrectionMark(r["id"], r["symbol"], r["timeframe"], r["ts"]) for r in rows]

    async def mark_checked(self, conn: asyncpg.Connection, ids: Sequence[int]) -> None:
        """These corrections' labels were relabelled (or needed nothing)."""
        await conn.execute(
            "UPDATE bar_corrections SET relabel_checked_at=now() WHERE id = ANY($1::bigint[])",
            list(ids),
        )

    async def labels_reading(
        self,
        conn: asyncpg.Connection,
        symbol: str,
        timeframe: str,
        *,
        label_spec: str,
        times: Sequence[datetime],
    ) -> list[StoredLabel]:
        """The series' labels under ``label_spec`` whose window holds one of ``times`` (bar
        open times), oldest signal first, locked for this transaction."""
        rows = await conn.fetch(
            """SELECT * FROM labels l
               WHERE l.symbol=$1 AND l.timeframe=$2 AND l.label_spec=$3
                 AND l.window_start IS NOT NULL AND l.window_end >= $5
                 AND EXISTS (SELECT 1 FROM unnest($4::timestamptz[]) AS c(ts)
                             WHERE c.ts BETWEEN l.window_start AND l.window_end)
               ORDER BY l.signal_ts, l.signal_id
               FOR UPDATE""",
            symbol,
            timeframe,
            label_spec,
            list(times),
            min(times),
        )
        return [
            StoredLabel(
                signal=PendingSignal(
                    signal_id=r["signal_id"],
                    label_spec=r["label_spec"],
                    symbol=r["symbol"],
                    timeframe=r["timeframe"],
                    side=r["side"],
                    ts=r["signal_ts"],
                    entry_price=r["entry_price"],
                ),
                labels=json.loads(r["labels"]),
                revision=int(r["revision"]),
            )
            for r in rows
        ]

    async def replace_labels(
        self, conn: asyncpg.Connection, relabelled: Sequence[tuple[LabelRow, int]]
    ) -> None:
        """Store new labels of stored rows, each with its new revision."""
        await conn.execute(
            """UPDATE labels l SET labels=u.labels, revision=u.revision,
                   liquidity_cluster=u.cluster, window_start=u.window_start,
                   window_end=u.window_end, labeled_at=now()
               FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::text[],
                           $6::timestamptz[], $7::timestamptz[])
                   AS u(signal_id, label_spec, labels, revision, cluster, window_start,
                        window_end)
               WHERE l.signal_id = u.signal_id AND l.label_spec = u.label_spec""",
            [r.signal.signal_id for r, _ in relabelled],
            [r.signal.label_spec for r, _ in relabelled],
            [json.dumps(asdict(r.labels)) for r, _ in relabelled],
            [revision for _, revision in relabelled],
            [r.cluster for r, _ in relabelled],
            [r.window_start for r, _ in relabelled],
            [r.window_end for r, _ in relabelled],
        )

    async def labels_of(
        self, conn: asyncpg.Pool, signal_id: str, *, label_spec: str | None
    ) -> list[LabelRecord]:
        """A signal's labels: under ``label_spec``, or under every spec (oldest first)."""
        rows = await conn.fetch(
            """SELECT * FROM labels WHERE signal_id=$1 AND ($2::text IS NULL OR label_spec=$2)
               ORDER BY labeled_at, label_spec""",
            signal_id,
            label_spec,
        )
        return [
            LabelRecord(
                signal_id=r["signal_id"],
                label_spec=r["label_spec"],
                revision=int(r["revision"]),
                symbol=r["symbol"],
                timeframe=r["timeframe"],
                side=r["side"],
                signal_ts=r["signal_ts"],
                labels=SignalLabels(**json.loads(r["labels"])),
                liquidity_cluster=r["liquidity_cluster"],
                labeled_at=r["labeled_at"],
            )
            for r in rows
        ]

    async def count_labels(self, conn: asyncpg.Pool) -> int:
        """Labels stored (every spec)."""
        return int(await conn.fetchval("SELECT count(*) FROM labels"))
