"""The trainer's tables for model families (schema ``trainer``): Back-Labeler labels.

``signal_labels`` holds one row per ``(signal_id, label_spec)``: the highest
``label_revision`` wins, then the newest ``occurred_at`` (a redelivery or an older copy
changes nothing); ``label_specs`` remembers when each spec was first seen, so a family
without a configured spec trains on the newest one. Reads return the domain's
:class:`~hindsight.trainer.domain.family_rows.LabelledSignal`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from hindsight.common.events import SignalLabeled
from hindsight.trainer.domain.family_rows import LabelledSignal
from hindsight.trainer.domain.family_spec import FamilySpec
from hindsight.trainer.storage import Storage

__all__ = ["FamilyStorage", "LabelStats"]


@dataclass(frozen=True, slots=True)
class LabelStats:
    """Labels held per label spec, newest spec first."""

    label_spec: str
    labels: int


def _family_filter(first: int) -> str:
    """SQL over ``signals s`` selecting a family's signals, parameters ``$first`` .. +2."""
    a, b, c = first, first + 1, first + 2
    return (
        f"s.feature_schema_version = ${a}::integer"
        f" AND (${b}::text[] IS NULL OR s.symbol = ANY(${b}::text[]))"
        f" AND (${c}::text[] IS NULL OR s.timeframe = ANY(${c}::text[]))"
    )


def _family_args(spec: FamilySpec) -> tuple[int, list[str] | None, list[str] | None]:
    return (
        spec.feature_schema_version,
        None if spec.symbols is None else list(spec.symbols),
        None if spec.timeframes is None else list(spec.timeframes),
    )


_WRITTEN = "GREATEST(l.updated_at, s.received_at)"
"""When a label became usable for training: written (or revised), and its signal held."""

_LABEL_COLUMNS = (
    "signal_id",
    "label_spec",
    "revision",
    "horizon_bars",
    "runup_r",
    "drawdown_r",
    "realised_r",
    "y_entry",
    "t_hit_tp",
    "t_hit_sl",
    "mfe_atr",
    "mae_atr",
    "mfe_r",
    "mae_r",
    "dd_katr",
    "best_offset_katr",
    "liquidity_cluster",
    "symbol",
    "timeframe",
    "source",
    "occurred_at",
)
_LABEL_TYPES = (
    "text",
    "text",
    "integer",
    "integer",
    *["double precision"] * 3,
    "smallint",
    *["double precision"] * 8,
    *["text"] * 4,
    "timestamptz",
)
_UPDATABLE = [c for c in _LABEL_COLUMNS if c not in ("signal_id", "label_spec")]
_UPSERT_LABELS = f"""
    WITH written AS (
        INSERT INTO signal_labels ({", ".join(_LABEL_COLUMNS)})
        SELECT * FROM unnest({", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_LABEL_TYPES))})
        ON CONFLICT (signal_id, label_spec) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATABLE)}, updated_at = now()
        WHERE (signal_labels.revision, signal_labels.occurred_at)
            < (EXCLUDED.revision, EXCLUDED.occurred_at)
        RETURNING signal_id, label_spec
    ), specs AS (
        INSERT INTO label_specs (label_spec)
        SELECT DISTINCT label_spec FROM unnest($2::text[]) AS u(label_spec)
        ORDER BY label_spec
        ON CONFLICT (label_spec) DO NOTHING
    )
    SELECT signal_id, label_spec FROM written"""
assert len(_LABEL_COLUMNS) == len(_LABEL_TYPES)


class FamilyStorage:
    """Label upserts and the families' training rows, on the trainer's pool."""

    def __init__(self, storage: Storage) -> None:
        # The pool is opened at start and handed to ``storage``: read it from there.
        self.storage = storage

    @property
    def pool(self) -> asyncpg.Pool:
        return self.storage.pool

    async def upsert_signal_labels(self, events: Sequence[SignalLabeled]) -> set[tuple[str, str]]:
        """Insert or (when of a higher revision, or as high and newer) replace, in one
        statement; the ``(signal_id, label_spec)`` keys written. One row per key (the caller
        keeps the one to write)."""
        columns: list[list[object]] = [[] for _ in _LABEL_COLUMNS]
        for e in events:
            values = (
                e.signal_id,
                e.label_spec,
                e.label_revision,
                e.horizon_bars,
                e.runup_r,
                e.drawdown_r,
                e.realised_r,
                e.y_entry,
                e.t_hit_tp,
                e.t_hit_sl,
                e.mfe_atr,
                e.mae_atr,
                e.mfe_r,
                e.mae_r,
                e.dd_katr,
                e.best_offset_katr,
                e.liquidity_cluster,
                e.symbol,
                e.timeframe,
                e.source,
                e.occurred_at,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        written = await self.pool.fetch(_UPSERT_LABELS, *columns)
        return {(r["signal_id"], r["label_spec"]) for r in written}

    async def label_stats(self, spec: FamilySpec) -> list[LabelStats]:
        """The label specs held for ``spec``'s signals and how many labels each, newest
        spec (first seen last) first."""
        rows = await self.pool.fetch(
            f"""SELECT ls.label_spec, count(*) AS labels
                FROM label_specs ls
                JOIN signal_labels l ON l.label_spec = ls.label_spec
                JOIN signals s ON s.signal_id = l.signal_id
                WHERE {_family_filter(1)}
                GROUP BY ls.label_spec, ls.first_seen_at
                ORDER BY ls.first_seen_at DESC, ls.label_spec DESC""",
            *_family_args(spec),
        )
        return [LabelStats(r["label_spec"], r["labels"]) for r in rows]

    async def labels_since(self, since: datetime | None, spec: FamilySpec) -> int:
        """Labels of ``spec``'s signals written (new, or a higher revision) after ``since``
        (all when None). A label whose signal came later counts from the signal's arrival:
        only then can a run use it."""
        value = await self.pool.fetchval(
            f"""SELECT count(*) FROM signal_labels l JOIN signals s ON s.signal_id = l.signal_id
                WHERE ($1::timestamptz IS NULL OR {_WRITTEN} > $1) AND {_family_filter(2)}""",
            since,
            *_family_args(spec),
        )
        return int(value)

    async def latest_label_at(self, spec: FamilySpec) -> datetime | None:
        """When the newest label of ``spec``'s signals became usable (None when none)."""
        value: datetime | None = await self.pool.fetchval(
            f"""SELECT max({_WRITTEN}) FROM signal_labels l
                JOIN signals s ON s.signal_id = l.signal_id WHERE {_family_filter(1)}""",
            *_family_args(spec),
        )
        return value

    async def family_rows(self, spec: FamilySpec, label_spec: str) -> list[LabelledSignal]:
        """``spec``'s signals with a ``label_spec`` label, by ``ts`` then ``signal_id``."""
        async with self.pool.acquire() as conn:
            records = await conn.fetch(
                f"""SELECT s.signal_id, s.seq, s.symbol, s.timeframe, s.side, s.ts,
                           s.occurred_at, s.features::text AS features,
                           s.feature_schema_version, s.entry_price, l.label_spec, l.revision,
                           l.horizon_bars, l.y_entry, l.realised_r, l.runup_r, l.dd_katr,
                           l.best_offset_katr, l.liquidity_cluster
                    FROM signal_labels l JOIN signals s ON s.signal_id = l.signal_id
                    WHERE l.label_spec = $4 AND {_family_filter(1)}
                    ORDER BY s.ts, s.signal_id""",
                *_family_args(spec),
                label_spec,
            )
        return [
            LabelledSignal(
                signal_id=r["signal_id"],
                seq=r["seq"],
                symbol=r["symbol"],
                timeframe=r["timeframe"],
                side=r["side"],
                ts=r["ts"],
                occurred_at=r["occurred_at"],
                features=json.loads(r["features"]),
                feature_schema_version=r["feature_schema_version"],
                entry_price=r["entry_price"],
                label_spec=r["label_spec"],
                revision=r["revision"],
                horizon_bars=r["horizon_bars"],
                y_entry=r["y_entry"],
                realised_r=r["realised_r"],
                runup_r=r["runup_r"],
                dd_katr=r["dd_katr"],
                best_offset_katr=r["best_offset_katr"],
                liquidity_cluster=r["liquidity_cluster"],
            )
            for r in records
        ]
