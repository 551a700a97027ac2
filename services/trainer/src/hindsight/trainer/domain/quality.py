"""The data-quality gate: runs before every training run; a failed gate never yields a model."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.rows import TrainingRow

__all__ = ["QualityConfig", "QualityReport", "check_quality"]


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Thresholds of the gate."""

    max_missing_share: float = 0.3
    """A feature missing in more than this share of rows fails the run."""
    clock_skew: timedelta = timedelta(minutes=5)
    """Tolerance of the timestamp checks (future ``ts``, event emitted before its ``ts``)."""
    min_rows: int = 100
    """Fewer usable rows than this (of the chosen schema version) fails the run."""


@dataclass(slots=True)
class QualityReport:
    """What the gate found: ``passed`` is False when any ``errors``; counts for the run row."""

    passed: bool = True
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    feature_schema_version: int | None = None
    feature_names: list[str] = field(default_factory=list)
    rows_in: int = 0
    rows_used: int = 0
    excluded_by_schema_version: dict[str, int] = field(default_factory=dict)
    duplicate_signal_ids: list[str] = field(default_factory=list)
    duplicate_rows: list[str] = field(default_factory=list)
    out_of_order: dict[str, int] = field(default_factory=dict)
    future_ts: list[str] = field(default_factory=list)
    emitted_before_ts: list[str] = field(default_factory=list)
    bad_prices: list[str] = field(default_factory=list)
    closed_before_signal: list[str] = field(default_factory=list)
    missing_share: dict[str, float] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        """Record a fatal problem."""
        self.passed = False
        self.errors.append(message)

    def to_dict(self) -> JsonObject:
        """JSON-ready, examples truncated to 20 ids each."""

        def cut(values: list[str]) -> list[str]:
            return values[:20]

        return {
            "passed": self.passed,
            "errors": self.errors,
            "warnings": self.warnings,
            "feature_schema_version": self.feature_schema_version,
            "feature_names": self.feature_names,
            "rows_in": self.rows_in,
            "rows_used": self.rows_used,
            "excluded_by_schema_version": self.excluded_by_schema_version,
            "duplicate_signal_ids": cut(self.duplicate_signal_ids),
            "duplicate_rows": cut(self.duplicate_rows),
            "out_of_order": self.out_of_order,
            "future_ts": cut(self.future_ts),
            "emitted_before_ts": cut(self.emitted_before_ts),
            "bad_prices": cut(self.bad_prices),
            "closed_before_signal": cut(self.closed_before_signal),
            "missing_share": self.missing_share,
        }


def _bad_price(value: float | None) -> bool:
    return value is not None and (not math.isfinite(value) or value <= 0)


def check_quality(
    rows: Sequence[TrainingRow],
    config: QualityConfig | None = None,
    *,
    as_of: datetime | None = None,
) -> tuple[QualityReport, list[TrainingRow]]:
    """Check ``rows`` (in arrival order) and return the report and the rows to train on.

    Only the newest ``feature_schema_version`` is used (older rows are counted in the
    report); the feature names are the union of that version's names, sorted.
    """
    cfg = config or QualityConfig()
    report = QualityReport(rows_in=len(rows))
    labelled = [r for r in rows if r.result is not None]
    if not labelled:
        report.fail("no signal with a known outcome")
        return report, []
    newest = max(r.feature_schema_version for r in labelled)
    report.feature_schema_version = newest
    versions = Counter(r.feature_schema_version for r in labelled)
    report.excluded_by_schema_version = {
        str(v): n for v, n in sorted(versions.items()) if v != newest
    }
    used = [r for r in labelled if r.feature_schema_version == newest]
    report.rows_used = len(used)

    ids = Counter(r.signal_id for r in used)
    report.duplicate_signal_ids = sorted(s for s, n in ids.items() if n > 1)
    if report.duplicate_signal_ids:
        report.fail(f"{len(report.duplicate_signal_ids)} duplicate signal ids")
    keys = Counter((r.symbol, r.ts, r.side) for r in used)
    dup_keys = [k for k, n in keys.items() if n > 1]
    report.duplicate_rows = [f"{s}|{ts.isoformat()}|{side}" for s, ts, side in dup_keys]
    if dup_keys:
        report.fail(f"{len(dup_keys)} duplicate (symbol, ts, side) rows")

    # Timestamp order. Consumers handle messages in parallel batches, so arrival order is
    # only reported (per symbol, rows that arrived after a younger row of that symbol);
    # what fails the run is a timestamp that cannot be true: a signal from the future, or
    # one emitted before its own as-of time (features computed with data from after it).
    last_ts: dict[str, datetime] = {}
    regressions: defaultdict[str, int] = defaultdict(int)
    for row in sorted(used, key=lambda r: r.seq):
        prev = last_ts.get(row.symbol)
        if prev is not None and row.ts < prev:
            regressions[row.symbol] += 1
        else:
            last_ts[row.symbol] = row.ts
    report.out_of_order = dict(regressions)
    if regressions:
        report.warnings.append(
            f"{sum(regressions.values())} rows arrived after a younger row of their symbol"
        )
    if as_of is not None:
        report.future_ts = [r.signal_id for r in used if r.ts > as_of + cfg.clock_skew]
        if report.future_ts:
            report.fail(f"{len(report.future_ts)} signals have a timestamp in the future")
    report.emitted_before_ts = [
        r.signal_id
        for r in used
        if r.occurred_at is not None and r.occurred_at < r.ts - cfg.clock_skew
    ]
    if report.emitted_before_ts:
        report.fail(
            f"{len(report.emitted_before_ts)} signals were emitted before their own ts "
            "(look-ahead features)"
        )

    report.bad_prices = [
        r.signal_id for r in used if _bad_price(r.entry_price) or _bad_price(r.exit_price)
    ]
    if report.bad_prices:
        report.fail(f"{len(report.bad_prices)} rows with a non-finite or non-positive price")
    report.closed_before_signal = [r.signal_id for r in used if r.closed_at < r.ts]
    if report.closed_before_signal:
        report.fail(f"{len(report.closed_before_signal)} outcomes closed before their signal")

    names = sorted({name for r in used for name in r.features})
    report.feature_names = names
    if not names:
        report.fail("no features")
    for name in names:
        missing = sum(
            1
            for r in used
            if r.features.get(name) is None or not math.isfinite(float(r.features[name] or 0.0))
        )
        share = missing / len(used)
        report.missing_share[name] = round(share, 6)
        if share > cfg.max_missing_share:
            report.fail(
                f"feature {name} missing in {share:.1%} of rows (max {cfg.max_missing_share:.1%})"
            )
    if len(used) < cfg.min_rows:
        report.fail(f"only {len(used)} usable rows (min {cfg.min_rows})")
    if len({r.result for r in used}) < 2 or not any(r.result == "win" for r in used):
        report.fail("the outcomes hold a single class")
    return report, (used if report.passed else [])
