"""The trainer's PostgreSQL repository (schema ``trainer``): signals, outcomes, labels, runs.

Reads return typed, frozen records: :class:`TrainingRun` (a ``runs`` row), :class:`RunSummary`
(the list's lighter row), :class:`DataStats`, :class:`SignalRef` and the domain's
:class:`~hindsight.trainer.domain.rows.TrainingRow`.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

import asyncpg
from pydantic import BaseModel, ConfigDict

from hindsight.common.events import LabelSaved, SignalFeatures, SignalOutcome
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.rows import TrainingRow

__all__ = [
    "MIGRATIONS",
    "DataStats",
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
_JSON_COLUMNS = frozenset({"metrics", "report", "headline"})

RunMode = Literal["full", "incremental"]
RunStatus = Literal["running", "completed", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class SignalRef:
    """What deriving an outcome's result needs from its signal."""

    side: str
    timeframe: str
    entry_price: float | None


class _RunColumns(BaseModel):
    """The columns of a ``runs`` row that every read returns."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)

    run_id: str
    model_name: str
    mode: RunMode
    trigger: str
    """Who asked: ``api``, ``schedule``, ``data`` or ``event``."""
    status: RunStatus
    reason: str | None
    requested_by: str | None
    error: str | None
    """Why a run failed or was skipped."""
    created_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    version: str | None
    artifact_uri: str | None
    sha256: str | None
    dataset_size: int | None

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Self:
        """The record as read; its JSON columns arrive as text."""
        values = dict(record)
        for key, value in values.items():
            if key in _JSON_COLUMNS and isinstance(value, str):
                values[key] = json.loads(value)
        return cls.model_validate(values)


class TrainingRun(_RunColumns):
    """One training run, from its request to its end state (a ``runs`` row)."""

    metrics: JsonObject | None
    """The model card's metrics (free-form: headline, test, trading, ...)."""
    report: JsonObject | None
    """What the run found on the way (free-form: quality report, parity, row counts)."""


class RunSummary(_RunColumns):
    """A run as the list shows it: its metrics' headline instead of metrics and report."""

    headline: JsonObject | None
    """The headline metrics (free-form, as the card has them)."""


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

    async def upsert_signal(self, event: SignalFeatures) -> bool:
        """Insert or (when newer by occurred_at) replace; True when a row was written."""
        row = await self.pool.fetchrow(
            """INSERT INTO signals (signal_id, symbol, timeframe, side, ts, features,
                   feature_schema_version, entry_price, trade_id, run_id, setup_id,
                   rule_version, source, occurred_at)
               VALUES ($1,$2,$3,$4,$5,$6::jsonb,$7,$8,$9,$10,$11,$12,$13,$14)
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
            event.signal_id,
            event.symbol,
            event.timeframe,
            event.side,
            event.ts,
            _json(event.features),
            event.feature_schema_version,
            event.entry_price,
            event.trade_id,
            event.run_id,
            event.setup_id,
            event.rule_version,
            event.source,
            event.occurred_at,
        )
        return row is not None

    async def signal_ref(self, signal_id: str) -> SignalRef | None:
        """Side, timeframe and entry price of a known signal."""
        row = await self.pool.fetchrow(
            "SELECT side, timeframe, entry_price FROM signals WHERE signal_id = $1", signal_id
        )
        return None if row is None else SignalRef(row["side"], row["timeframe"], row["entry_price"])

    async def upsert_outcome(
        self, event: SignalOutcome, *, result: str | None, derived: bool
    ) -> bool:
        """Insert or (when newer by occurred_at) replace an outcome."""
        row = await self.pool.fetchrow(
            """INSERT INTO outcomes (signal_id, closed_at, result, result_derived, entry_price,
                   exit_price, pnl, realised_r, mfe, mae, source, occurred_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
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
            event.signal_id,
            event.closed_at,
            result,
            derived,
            event.entry_price,
            event.exit_price,
            event.pnl,
            event.realised_r,
            event.mfe,
            event.mae,
            event.source,
            event.occurred_at,
        )
        return row is not None

    async def pending_outcome(self, signal_id: str) -> tuple[float | None, float | None] | None:
        """(entry, exit) of an outcome still waiting for its signal, if any."""
        row = await self.pool.fetchrow(
            "SELECT entry_price, exit_price FROM outcomes WHERE signal_id = $1 AND result IS NULL",
            signal_id,
        )
        return None if row is None else (row["entry_price"], row["exit_price"])

    async def set_result(self, signal_id: str, result: str) -> None:
        """Fill in a derived result of a pending outcome."""
        await self.pool.execute(
            """UPDATE outcomes SET result = $2, result_derived = true
               WHERE signal_id = $1 AND result IS NULL""",
            signal_id,
            result,
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

    async def training_rows(self) -> list[TrainingRow]:
        """Signals with an outcome whose result is known, latest human label per trade."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(
                """SELECT s.signal_id, s.seq, s.symbol, s.timeframe, s.side, s.ts,
                          s.features::text AS features, s.feature_schema_version,
                          COALESCE(o.entry_price, s.entry_price) AS entry_price,
                          o.exit_price, o.closed_at, o.result, o.realised_r, l.label,
                          s.occurred_at
                   FROM signals s
                   JOIN outcomes o ON o.signal_id = s.signal_id
                   LEFT JOIN LATERAL (
                       SELECT label FROM labels WHERE labels.trade_id = s.trade_id
                       ORDER BY occurred_at DESC LIMIT 1) l ON true
                   WHERE o.result IS NOT NULL
                   ORDER BY s.seq"""
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

    async def latest_outcome_at(self) -> datetime | None:
        """When the newest outcome with a known result was received (None when none)."""
        value: datetime | None = await self.pool.fetchval(
            "SELECT max(received_at) FROM outcomes WHERE result IS NOT NULL"
        )
        return value

    async def outcomes_since(self, since: datetime | None) -> int:
        """Outcomes with a known result received after ``since`` (all when None)."""
        value = await self.pool.fetchval(
            """SELECT count(*) FROM outcomes
               WHERE result IS NOT NULL AND ($1::timestamptz IS NULL OR received_at > $1)""",
            since,
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
