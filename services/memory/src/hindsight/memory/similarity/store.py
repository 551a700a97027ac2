"""Writes of ``pattern_embeds``: batched idempotent upserts of embeddings, and outcomes.

An upsert copies a batch into a transaction-local staging table (binary COPY, one round
trip for the rows) and merges it with one ``INSERT … ON CONFLICT``. A replayed row that is
already stored as given is left alone, so replays cost no write and no new HNSW entry.
An upsert never touches the outcome columns: an embedding recomputed by a new model keeps
the outcome the Back-Labeler reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from hindsight.common.errors import UnavailableError
from hindsight.memory.similarity.records import PatternEmbed, PatternOutcome, UpsertCounts

__all__ = ["PatternStore", "PoolSource"]

_STAGE_COLUMNS = (
    "signal_id",
    "symbol",
    "timeframe",
    "ts",
    "embed",
    "pattern",
    "quality",
    "pole_katr",
    "model_version",
)

_MERGE = """
WITH written AS (
    INSERT INTO pattern_embeds AS t (signal_id, symbol, timeframe, ts, embed, pattern,
                                     quality, pole_katr, model_version)
    SELECT s.signal_id, s.symbol, s.timeframe, s.ts, s.embed::vector(64), s.pattern,
           s.quality, s.pole_katr, s.model_version
    FROM pattern_embeds_stage s
    ON CONFLICT (signal_id) DO UPDATE SET
        symbol = EXCLUDED.symbol, timeframe = EXCLUDED.timeframe, ts = EXCLUDED.ts,
        embed = EXCLUDED.embed, pattern = EXCLUDED.pattern, quality = EXCLUDED.quality,
        pole_katr = EXCLUDED.pole_katr, model_version = EXCLUDED.model_version,
        updated_at = now()
    WHERE (t.symbol, t.timeframe, t.ts, t.embed, t.pattern, t.quality, t.pole_katr,
           t.model_version)
          IS DISTINCT FROM
          (EXCLUDED.symbol, EXCLUDED.timeframe, EXCLUDED.ts, EXCLUDED.embed, EXCLUDED.pattern,
           EXCLUDED.quality, EXCLUDED.pole_katr, EXCLUDED.model_version)
    RETURNING (xmax = 0) AS inserted)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM written
"""


class PoolSource(Protocol):
    """Whatever holds the service's pool (memory's ``Storage``: set when the database starts)."""

    pool: asyncpg.Pool | None


class PatternStore:
    """Writes of ``pattern_embeds`` (schema ``memory``, migration 0003)."""

    def __init__(self, source: PoolSource, *, batch_size: int = 5000) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.source = source
        self.batch_size = batch_size

    def _pool(self) -> asyncpg.Pool:
        if self.source.pool is None:
            raise UnavailableError("database not connected")
        return self.source.pool

    async def upsert_many(self, rows: Sequence[PatternEmbed]) -> UpsertCounts:
        """Insert or replace embeddings by signal_id, ``batch_size`` rows per transaction.

        A signal_id given twice keeps its last row. Outcome columns are never overwritten.
        """
        latest = {row.signal_id: row for row in rows}
        unique = list(latest.values())
        inserted = updated = 0
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            i, u = await self._upsert_batch(batch)
            inserted += i
            updated += u
        return UpsertCounts(inserted, updated, len(unique) - inserted - updated)

    async def _upsert_batch(self, batch: Sequence[PatternEmbed]) -> tuple[int, int]:
        records: list[tuple[Any, ...]] = [
            (
                r.signal_id,
                r.symbol,
                r.timeframe,
                r.ts,
                list(r.embed),
                r.pattern,
                r.quality,
                r.pole_katr,
                r.model_version,
            )
            for r in batch
        ]
        async with self._pool().acquire() as conn, conn.transaction():
            await conn.execute(
                """CREATE TEMP TABLE pattern_embeds_stage (
                       signal_id text, symbol text, timeframe text, ts timestamptz,
                       embed real[], pattern text, quality real, pole_katr real,
                       model_version text) ON COMMIT DROP"""
            )
            await conn.copy_records_to_table(
                "pattern_embeds_stage", records=records, columns=_STAGE_COLUMNS
            )
            counts = await conn.fetchrow(_MERGE)
        assert counts is not None
        return int(counts["inserted"]), int(counts["updated"])

    async def record_outcome(self, signal_id: str, realised_r: float, known_at: datetime) -> bool:
        """Attach a signal's realised R, known at ``known_at`` (the ``signal.labeled`` event's
        occurred_at). False when no embedding of the signal is stored, or a later-known
        outcome already is."""
        return await self.record_outcomes([PatternOutcome(signal_id, realised_r, known_at)]) == 1

    async def record_outcomes(self, outcomes: Sequence[PatternOutcome]) -> int:
        """Attach many outcomes in one statement; returns how many rows took theirs.

        The latest-known outcome of a signal wins (a relabel is known later than the label it
        corrects); an older one arriving late is ignored. The last of duplicates in
        ``outcomes`` is the one written.
        """
        latest = {o.signal_id: o for o in outcomes}
        if not latest:
            return 0
        status = await self._pool().execute(
            """UPDATE pattern_embeds AS t
               SET realised_r = o.realised_r, outcome_known_at = o.known_at, updated_at = now()
               FROM unnest($1::text[], $2::real[], $3::timestamptz[])
                    AS o(signal_id, realised_r, known_at)
               WHERE t.signal_id = o.signal_id
                 AND (t.outcome_known_at IS NULL OR t.outcome_known_at <= o.known_at)""",
            [o.signal_id for o in latest.values()],
            [o.realised_r for o in latest.values()],
            [o.known_at for o in latest.values()],
        )
        return int(status.split()[-1])

    async def count(self) -> int:
        """Stored embeddings."""
        return int(await self._pool().fetchval("SELECT count(*) FROM pattern_embeds"))
