"""The trainer's PostgreSQL repository (schema ``trainer``): signals, outcomes, labels, runs.

Reads return typed, frozen records: :class:`TrainingRun` (a ``runs`` row), :class:`RunSummary`
(the list's lighter row), :class:`DataStats`, :class:`SignalRef` and the domain's
:class:`~hindsight.trainer.domain.rows.TrainingRow`. The run records, with :data:`RunMode` and
:data:`RunStatus`, are defined in :mod:`hindsight.common.trainer_api` (the clients of the runs
API read them too) and re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from pydantic import BaseModel, ConfigDict

from hindsight.common.events import LabelSaved, SignalFeatures, SignalOutcome
from hindsight.common.trainer_api import RunMode, RunStatus, RunSummary, TrainingRun
from hindsight.trainer.domain.data_spec import DataSpec
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.rows import TrainingRow

__all__ = [
    "MIGRATIONS",
    "DataStats",
    "OutcomeRow",
    "PendingOutcome",
    "RunArtifact",
    "RunMode",
    "RunStatus",
    "RunSummary",
    "SignalRef",
    "Storage",
    "TrainingRun",
]

MIGRATIONS = Path(__file__).parent / "migrations"

_SUMMARY_COLUMNS = (
    "run_id, model_name, mode, trigger, status, reason, requested_by, error, created_at, "
    "finished_at, duration_s, version, artifact_uri, sha256, dataset_size"
)
_RUN_COLUMNS = f"{_SUMMARY_COLUMNS}, metrics, report"


@dataclass(frozen=True, slots=True)
class SignalRef:
    """What deriving an outcome's result needs from its signal."""

    side: str
    timeframe: str
    entry_price: float | None


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """An outcome event with its result as the ingestor resolved it."""

    event: SignalOutcome
    result: str | None
    """Given, derived from prices, or None while its signal is unknown."""
    derived: bool


@dataclass(frozen=True, slots=True)
class PendingOutcome:
    """An outcome waiting for its result, with the signal that can now derive it."""

    signal_id: str
    entry_price: float | None
    exit_price: float | None
    signal: SignalRef


class DataStats(BaseModel):
    """Row counts of the data set and runs by status."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    signals: int
    outcomes: int
    pending_outcomes: int
    """Outcomes whose result waits for their signal (to be derived)."""
    derived_outcomes: int
    signals_with_outcome: int
    labels: int
    first_signal_at: datetime | None
    last_signal_at: datetime | None
    runs: dict[str, int]
    """Runs by status."""
    results: dict[str, int]
    """Known outcome results by result (win, loss, breakeven)."""


@dataclass(frozen=True, slots=True)
class RunArtifact:
    """What a completed run wrote: its version, artifact and metrics."""

    version: str
    artifact_uri: str
    sha256: str
    dataset_size: int
    metrics: JsonObject
    """The model card's metrics (free-form)."""


def _spec_filter(first: int) -> str:
    """SQL over ``signals s`` selecting a data spec's rows, parameters ``$first`` .. +2."""
    a, b, c = first, first + 1, first + 2
    return (
        f"s.feature_schema_version = ${a}::integer"
        f" AND (${b}::text[] IS NULL OR s.symbol = ANY(${b}::text[]))"
        f" AND (${c}::text[] IS NULL OR s.timeframe = ANY(${c}::text[]))"
    )


def _spec_args(spec: DataSpec) -> tuple[int, list[str] | None, list[str] | None]:
    return (
        spec.feature_schema_version,
        None if spec.symbols is None else list(spec.symbols),
        None if spec.timeframes is None else list(spec.timeframes),
    )


def _json(value: JsonObject | None) -> str | None:
    return None if value is None else json.dumps(value, allow_nan=False, default=str)


class Storage:
    """Idempotent upserts of ingested events and the run rows."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ping(self) -> None:
        """Raise when the database does not answer."""
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    # --- ingestion ---------------------------------------------------------------------

    async def upsert_signals(self, events: Sequence[SignalFeatures]) -> set[str]:
        """Insert or (when newer by occurred_at) replace, in one statement; the ids written.

        One event per signal_id (the caller keeps the newest): a row cannot be updated
        twice by one statement.
        """
        columns: list[list[object]] = [[] for _ in range(14)]
        for e in events:
            row = (
                e.signal_id,
                e.symbol,
                e.timeframe,
                e.side,
                e.ts,
                _json(e.features),
                e.feature_schema_version,
                e.entry_price,
                e.trade_id,
                e.run_id,
                e.setup_id,
                e.rule_version,
                e.source,
                e.occurred_at,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        # unnest of one array per column: one round trip whatever the batch size. COPY into
        # a temporary table + INSERT … SELECT measured only ~8 % faster at 1,000 rows
        # (10.1k vs 10.9k signals/s): not worth a transaction and a temp table per batch.
        rows = await self.pool.fetch(
            """INSERT INTO signals (signal_id, symbol, timeframe, side, ts, features,
                   feature_schema_version, entry_price, trade_id, run_id, setup_id,
                   rule_version, source, occurred_at)
               SELECT u.signal_id, u.symbol, u.timeframe, u.side, u.ts, u.features::jsonb,
                      u.feature_schema_version, u.entry_price, u.trade_id, u.run_id,
                      u.setup_id, u.rule_version, u.source, u.occurred_at
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                           $6::text[], $7::integer[], $8::double precision[], $9::text[],
                           $10::text[], $11::text[], $12::text[], $13::text[],
                           $14::timestamptz[])
                    AS u(signal_id, symbol, timeframe, side, ts, features,
                         feature_schema_version, entry_price, trade_id, run_id, setup_id,
                         rule_version, source, occurred_at)
               ON CONFLICT (signal_id) DO UPDATE SET
                   symbol = EXCLUDED.symbol, timeframe = EXCLUDED.timeframe,
                   side = EXCLUDED.side, ts = EXCLUDED.ts, features = EXCLUDED.features,
                   feature_schema_version = EXCLUDED.feature_schema_version,
                   entry_price = EXCLUDED.entry_price, trade_id = EXCLUDED.trade_id,
                   run_id = EXCLUDED.run_id, setup_id = EXCLUDED.setup_id,
                   rule_version = EXCLUDED.rule_version, source = EXCLUDED.source,
                   occurred_at = EXCLUDED.occurred_at
               WHERE signals.occurred_at < EXCLUDED.occurred_at
               RETURNING signal_id""",
            *columns,
        )
        return {r["signal_id"] for r in rows}

    async def signal_refs(self, signal_ids: Collection[str]) -> dict[str, SignalRef]:
        """Side, timeframe and entry price of the known signals among ``signal_ids``."""
        rows = await self.pool.fetch(
            """SELECT signal_id, side, timeframe, entry_price FROM signals
               WHERE signal_id = ANY($1::text[])""",
            list(signal_ids),
        )
        return {
            r["signal_id"]: SignalRef(r["side"], r["timeframe"], r["entry_price"]) for r in rows
        }

    async def upsert_outcomes(self, outcomes: Sequence[OutcomeRow]) -> set[str]:
        """Insert or (when newer by occurred_at, or when it brings the missing result)
        replace, in one statement; the ids written. One row per signal_id."""
        columns: list[list[object]] = [[] for _ in range(12)]
        for o in outcomes:
            e = o.event
            row = (
                e.signal_id,
                e.closed_at,
                o.result,
                o.derived,
                e.entry_price,
                e.exit_price,
                e.pnl,
                e.realised_r,
                e.mfe,
                e.mae,
                e.source,
                e.occurred_at,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        rows = await self.pool.fetch(
            """INSERT INTO outcomes (signal_id, closed_at, result, result_derived, entry_price,
                   exit_price, pnl, realised_r, mfe, mae, source, occurred_at)
               SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::boolean[],
                   $5::double precision[], $6::double precision[], $7::double precision[],
                   $8::double precision[], $9::double precision[], $10::double precision[],
                   $11::text[], $12::timestamptz[])
               ON CONFLICT (signal_id) DO UPDATE SET
                   closed_at = EXCLUDED.closed_at, result = EXCLUDED.result,
                   result_derived = EXCLUDED.result_derived,
                   entry_price = EXCLUDED.entry_price, exit_price = EXCLUDED.exit_price,
                   pnl = EXCLUDED.pnl, realised_r = EXCLUDED.realised_r, mfe = EXCLUDED.mfe,
                   mae = EXCLUDED.mae, source = EXCLUDED.source,
                   occurred_at = EXCLUDED.occurred_at
               WHERE outcomes.occurred_at < EXCLUDED.occurred_at
                  OR (outcomes.result IS NULL AND EXCLUDED.result IS NOT NULL)
               RETURNING signal_id""",
            *columns,
        )
        return {r["signal_id"] for r in rows}

    async def pending_outcomes(self, signal_ids: Collection[str]) -> list[PendingOutcome]:
        """Outcomes among ``signal_ids`` still without a result whose signal is known."""
        rows = await self.pool.fetch(
            """SELECT o.signal_id, o.entry_price, o.exit_price, s.side, s.timeframe,
                      s.entry_price AS signal_entry
               FROM outcomes o JOIN signals s USING (signal_id)
               WHERE o.signal_id = ANY($1::text[]) AND o.result IS NULL""",
            list(signal_ids),
        )
        return [
            PendingOutcome(
                signal_id=r["signal_id"],
                entry_price=r["entry_price"],
                exit_price=r["exit_price"],
                signal=SignalRef(r["side"], r["timeframe"], r["signal_entry"]),
            )
            for r in rows
        ]

    async def set_results(self, results: Mapping[str, str]) -> None:
        """Fill in derived results of pending outcomes (signal_id → result)."""
        if not results:
            return
        await self.pool.execute(
            """UPDATE outcomes o SET result = u.result, result_derived = true
               FROM unnest($1::text[], $2::text[]) AS u(signal_id, result)
               WHERE o.signal_id = u.signal_id AND o.result IS NULL""",
            list(results),
            list(results.values()),
        )

    async def upsert_label(self, event: LabelSaved) -> bool:
        """Keep the latest label per (trade_id, labeler_id) by occurred_at."""
        row = await self.pool.fetchrow(
            """INSERT INTO labels (trade_id, labeler_id, label, quality_grade, llm_agreed,
                   occurred_at)
               VALUES ($1,$2,$3,$4,$5,$6)
               ON CONFLICT (trade_id, labeler_id) DO UPDATE SET
                   label = EXCLUDED.label, quality_grade = EXCLUDED.quality_grade,
                   llm_agreed = EXCLUDED.llm_agreed, occurred_at = EXCLUDED.occurred_at
               WHERE labels.occurred_at < EXCLUDED.occurred_at
               RETURNING trade_id""",
            event.trade_id,
            event.labeler_id,
            event.label,
            event.quality_grade,
            event.llm_agreed,
            event.occurred_at,
        )
        return row is not None

    # --- training data -----------------------------------------------------------------

    async def training_rows(self, spec: DataSpec) -> list[TrainingRow]:
        """``spec``'s signals with an outcome whose result is known, latest human label per
        trade."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(
                f"""SELECT s.signal_id, s.seq, s.symbol, s.timeframe, s.side, s.ts,
                          s.features::text AS features, s.feature_schema_version,
                          COALESCE(o.entry_price, s.entry_price) AS entry_price,
                          o.exit_price, o.closed_at, o.result, o.realised_r, l.label,
                          s.occurred_at
                   FROM signals s
                   JOIN outcomes o ON o.signal_id = s.signal_id
                   LEFT JOIN LATERAL (
                       SELECT label FROM labels WHERE labels.trade_id = s.trade_id
                       ORDER BY occurred_at DESC LIMIT 1) l ON true
                   WHERE o.result IS NOT NULL AND {_spec_filter(1)}
                   ORDER BY s.seq""",
                *_spec_args(spec),
            )
        return [
            TrainingRow(
                signal_id=r["signal_id"],
                symbol=r["symbol"],
                timeframe=r["timeframe"],
                side=r["side"],
                ts=r["ts"],
                features=json.loads(r["features"]),
                feature_schema_version=r["feature_schema_version"],
                closed_at=r["closed_at"],
                result=r["result"],
                entry_price=r["entry_price"],
                exit_price=r["exit_price"],
                realised_r=r["realised_r"],
                label=r["label"],
                seq=r["seq"],
                occurred_at=r["occurred_at"],
            )
            for r in records
        ]

    async def stats(self) -> DataStats:
        """Row counts of the data set and runs by status."""
        row = await self.pool.fetchrow(
            """SELECT (SELECT count(*) FROM signals) AS signals,
                      (SELECT count(*) FROM outcomes) AS outcomes,
                      (SELECT count(*) FROM outcomes WHERE result IS NULL) AS pending_outcomes,
                      (SELECT count(*) FROM outcomes WHERE result_derived) AS derived_outcomes,
                      (SELECT count(*) FROM signals s JOIN outcomes o USING (signal_id)
                        WHERE o.result IS NOT NULL) AS signals_with_outcome,
                      (SELECT count(*) FROM labels) AS labels,
                      (SELECT min(ts) FROM signals) AS first_signal_at,
                      (SELECT max(ts) FROM signals) AS last_signal_at"""
        )
        assert row is not None
        by_status = await self.pool.fetch("SELECT status, count(*) AS n FROM runs GROUP BY status")
        results = await self.pool.fetch(
            "SELECT result, count(*) AS n FROM outcomes WHERE result IS NOT NULL GROUP BY result"
        )
        return DataStats(
            **dict(row),
            runs={r["status"]: r["n"] for r in by_status},
            results={r["result"]: r["n"] for r in results},
        )

    # --- runs ----------------------------------------------------------------------------

    async def create_run(
        self,
        *,
        run_id: str,
        model_name: str,
        mode: RunMode,
        trigger: str,
        status: RunStatus,
        reason: str | None,
        requested_by: str | None,
        error: str | None = None,
    ) -> TrainingRun:
        """Insert a run row (``running``, or ``skipped`` straight away)."""
        row = await self.pool.fetchrow(
            f"""INSERT INTO runs (run_id, model_name, mode, trigger, status, reason,
                    requested_by, error, finished_at, duration_s)
                VALUES ($1,$2,$3,$4,$5,$6,$7,$8,
                        CASE WHEN $5 = 'running' THEN NULL ELSE now() END,
                        CASE WHEN $5 = 'running' THEN NULL ELSE 0 END)
                RETURNING {_RUN_COLUMNS}""",
            run_id,
            model_name,
            mode,
            trigger,
            status,
            reason,
            requested_by,
            error,
        )
        assert row is not None
        return TrainingRun.of(row)

    async def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        duration_s: float,
        error: str | None = None,
        artifact: RunArtifact | None = None,
        report: JsonObject | None = None,
    ) -> TrainingRun:
        """Record a run's end state (``artifact``: what a completed run wrote)."""
        row = await self.pool.fetchrow(
            f"""UPDATE runs SET status = $2, duration_s = $3, error = $4, version = $5,
                    artifact_uri = $6, sha256 = $7, dataset_size = $8, metrics = $9::jsonb,
                    report = $10::jsonb, finished_at = now()
                WHERE run_id = $1 RETURNING {_RUN_COLUMNS}""",
            run_id,
            status,
            duration_s,
            error,
            artifact.version if artifact else None,
            artifact.artifact_uri if artifact else None,
            artifact.sha256 if artifact else None,
            artifact.dataset_size if artifact else None,
            _json(artifact.metrics if artifact else None),
            _json(report),
        )
        assert row is not None
        return TrainingRun.of(row)

    async def get_run(self, run_id: str) -> TrainingRun | None:
        """One run, or None."""
        row = await self.pool.fetchrow(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = $1", run_id)
        return None if row is None else TrainingRun.of(row)

    async def list_runs(
        self, *, model_name: str | None = None, limit: int = 50
    ) -> list[RunSummary]:
        """Newest runs first (metrics and report left out: see GET /v1/runs/{id})."""
        rows = await self.pool.fetch(
            f"""SELECT {_SUMMARY_COLUMNS}, metrics -> 'headline' AS headline FROM runs
                WHERE ($1::text IS NULL OR model_name = $1)
                ORDER BY created_at DESC LIMIT $2""",
            model_name,
            limit,
        )
        return [RunSummary.of(r) for r in rows]

    async def last_accepted_at(
        self, model_name: str, versions: Collection[str] | None
    ) -> datetime | None:
        """When the newest completed run of ``model_name`` whose version is in ``versions``
        started (any completed run when ``versions`` is None)."""
        value: datetime | None = await self.pool.fetchval(
            """SELECT max(created_at) FROM runs WHERE model_name = $1 AND status = 'completed'
                   AND ($2::text[] IS NULL OR version = ANY($2::text[]))""",
            model_name,
            None if versions is None else sorted(versions),
        )
        return value

    async def last_attempt_at(self, model_name: str) -> datetime | None:
        """When the newest run of ``model_name`` that trained or tried to (not skipped) started."""
        value: datetime | None = await self.pool.fetchval(
            "SELECT max(created_at) FROM runs WHERE model_name = $1 AND status <> 'skipped'",
            model_name,
        )
        return value

    async def latest_outcome_at(self, spec: DataSpec) -> datetime | None:
        """When the newest outcome of ``spec``'s rows with a known result was received
        (None when none)."""
        value: datetime | None = await self.pool.fetchval(
            f"""SELECT max(o.received_at) FROM outcomes o JOIN signals s USING (signal_id)
                WHERE o.result IS NOT NULL AND {_spec_filter(1)}""",
            *_spec_args(spec),
        )
        return value

    async def outcomes_since(self, since: datetime | None, spec: DataSpec) -> int:
        """Outcomes of ``spec``'s rows with a known result received after ``since`` (all
        when None)."""
        value = await self.pool.fetchval(
            f"""SELECT count(*) FROM outcomes o JOIN signals s USING (signal_id)
                WHERE o.result IS NOT NULL
                  AND ($1::timestamptz IS NULL OR o.received_at > $1) AND {_spec_filter(2)}""",
            since,
            *_spec_args(spec),
        )
        return int(value)

    async def fail_interrupted_runs(self) -> list[TrainingRun]:
        """Mark runs left ``running`` by a crash as failed; returns them."""
        rows = await self.pool.fetch(
            f"""UPDATE runs SET status = 'failed', finished_at = now(),
                    error = 'interrupted: the trainer stopped during the run',
                    duration_s = EXTRACT(EPOCH FROM now() - created_at)
                WHERE status = 'running' RETURNING {_RUN_COLUMNS}"""
        )
        return [TrainingRun.of(r) for r in rows]
