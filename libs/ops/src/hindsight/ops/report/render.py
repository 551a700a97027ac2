"""One self-contained HTML page (inline CSS, inline PNGs) from :class:`ReportData`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape

from hindsight.common.registry_api import (
    CalibrationBin,
    DailyMetrics,
    Stage,
    StageMove,
    VersionMetrics,
)

from .charts import PALETTE, calibration_chart, drift_chart, performance_chart, timeline_chart
from .source import DriftRow, ReportData

__all__ = ["WeekMetrics", "expected_calibration_error", "render_html", "weekly"]

PSI_THRESHOLD = 0.2
ECE_WARN = 0.1
"""ECE above which a version is called poorly calibrated (10 bins: ~0.05 is noise at n=400)."""

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;background:#f3f4f6;
color:#111827}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 2px} h2{font-size:18px;margin:30px 0 8px;border-bottom:2px solid
#e5e7eb;padding-bottom:4px} .sub{color:#6b7280;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;
margin:16px 0}
.card{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px #0000001a}
.card .k{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:600;margin-top:2px}
.card .v.small{font-size:14px;word-break:break-all;padding-top:5px}
.card .d{font-size:12px;color:#6b7280}
.bad{color:#dc2626} .ok{color:#16a34a} .warn{color:#ca8a04}
.panel{background:#fff;border-radius:8px;padding:14px;box-shadow:0 1px 2px #0000001a;
margin:10px 0}
.row{display:flex;gap:14px;flex-wrap:wrap} .row>.panel{flex:1 1 420px}
img{max-width:100%} table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{background:#f9fafb;font-weight:600} th.n{text-align:right}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.summary li{margin:3px 0} .pill{display:inline-block;padding:1px 8px;border-radius:10px;
font-size:12px;background:#e5e7eb} .pill.promote{background:#dcfce7} .pill.keep{background:#f3f4f6}
.pill.inconclusive{background:#fef9c3} .pill.rollback{background:#fee2e2}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.empty{color:#6b7280;font-style:italic}
"""


def _f(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * float(value):.1f}%"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    if not body:
        return "<p class='empty'>nothing in this month</p>"
    head = "".join(
        f"<th class='n'>{escape(h)}</th>" if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def expected_calibration_error(bins: Sequence[CalibrationBin], version: str) -> float | None:
    """n-weighted |mean predicted − observed| over the version's calibration bins."""
    mine = [b for b in bins if b.version == version and b.n]
    total = sum(b.n for b in mine)
    if not total:
        return None
    return sum(b.n * abs(_value(b.mean_p) - _value(b.win_rate)) for b in mine) / total


def _value(metric: float | None) -> float:
    # A metric over evaluated signals: present whenever there is one (n > 0).
    return math.nan if metric is None else metric


@dataclass(frozen=True, slots=True)
class WeekMetrics:
    """A version's evaluated signals of one ISO week, their metrics n-weighted over days."""

    week: date
    """The Monday."""
    version: str
    n: int
    win_rate: float
    mean_p: float
    brier: float
    log_loss: float


def weekly(daily: Sequence[DailyMetrics]) -> list[WeekMetrics]:
    """Per (ISO week, version): n-weighted win rate, mean p, Brier, log loss."""
    groups: dict[tuple[date, str], list[DailyMetrics]] = {}
    for r in daily:
        if not r.n:
            continue
        monday = r.day - timedelta(days=r.day.weekday())
        groups.setdefault((monday, r.version), []).append(r)
    out = []
    for (monday, version), rows in sorted(groups.items()):
        n = sum(r.n for r in rows)

        def mean(values: list[float | None], rows: list[DailyMetrics] = rows, n: int = n) -> float:
            return sum(r.n * _value(v) for r, v in zip(rows, values, strict=True)) / n

        out.append(
            WeekMetrics(
                week=monday,
                version=version,
                n=n,
                win_rate=mean([r.win_rate for r in rows]),
                mean_p=mean([r.mean_p for r in rows]),
                brier=mean([r.brier for r in rows]),
                log_loss=mean([r.log_loss for r in rows]),
            )
        )
    return out


def _card(key: str, value: str, detail: str = "", cls: str = "") -> str:
    return (
        f"<div class='card'><div class='k'>{escape(key)}</div>"
        f"<div class='v {cls}'>{value}</div><div class='d'>{detail}</div></div>"
    )


def _swatch(version: str, colors: dict[str, str]) -> str:
    color = colors.get(version, "#6b7280")
    return f"<span class='swatch' style='background:{color}'></span>{escape(version)}"


def _rollbacks(moves: Sequence[StageMove]) -> list[StageMove]:
    """One row per rollback: the move that put the older version back in production."""
    return [m for m in moves if "rollback" in m.action and m.to_stage is Stage.PRODUCTION]


def _summary(data: ReportData, colors: dict[str, str]) -> str:
    ev = data.evaluation
    items = []
    production = ev.production_version
    totals: dict[str, VersionMetrics] = {t.version: t for t in ev.totals}
    for version, t in totals.items():
        if not t.n:
            continue
        gap = _value(t.mean_p) - _value(t.win_rate)
        ece = expected_calibration_error(ev.calibration, version)
        items.append(
            f"{_swatch(version, colors)}{' (production)' if version == production else ''}: "
            f"{t.n} evaluated signals, observed win rate {_pct(t.win_rate)}, mean "
            f"predicted {_pct(t.mean_p)} ({abs(gap) * 100:.1f} pts "
            f"{'above' if gap > 0 else 'below'}), ECE {_f(ece)}"
            f"{' <span class=bad>(poorly calibrated)</span>' if ece and ece > ECE_WARN else ''}, "
            f"Brier {_f(t.brier)}, log loss {_f(t.log_loss)}."
        )
    promoted = [e for e in ev.experiments if e.decision == "promote"]
    if ev.experiments:
        items.append(f"{len(ev.experiments)} experiment(s); {len(promoted)} decided to promote.")
    rollbacks = _rollbacks(ev.stage_moves)
    if rollbacks:
        items.append(
            f"<span class='bad'>{len(rollbacks)} rollback(s)</span>: "
            + "; ".join(escape(f"{m.version} ({m.reason})") for m in rollbacks)
        )
    drifting = sorted(
        {r.feature for r in data.drift if math.isfinite(r.psi) and r.psi > PSI_THRESHOLD}
    )
    if drifting:
        items.append(
            f"<span class='bad'>{len(drifting)} feature(s) drifting</span> (PSI > "
            f"{PSI_THRESHOLD}): {escape(', '.join(drifting[:12]))}"
            + (" …" if len(drifting) > 12 else "")
        )
    elif data.drift:
        items.append("<span class='ok'>No feature over the PSI threshold.</span>")
    if not items:
        items.append("No evaluated predictions in this month.")
    return "<ul class='summary'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _drift_section(data: ReportData) -> str:
    if not data.drift:
        notes = (
            "".join(f"<li>{escape(n)}</li>" for n in data.notes) or "<li>no metrics URL given</li>"
        )
        return f"<p class='empty'>No drift gauges were read.</p><ul class='sub'>{notes}</ul>"
    windows = ", ".join(f"{escape(k)}: {int(v)} rows" for k, v in sorted(data.drift_rows.items()))
    chart = drift_chart(data.drift, threshold=PSI_THRESHOLD)
    worst = sorted(data.drift, key=lambda r: -r.psi if math.isfinite(r.psi) else math.inf)[:30]

    def row(r: DriftRow) -> list[str]:
        cls = "bad" if r.psi > PSI_THRESHOLD else "warn" if r.psi > PSI_THRESHOLD / 2 else ""
        return [
            escape(r.feature),
            escape(r.source),
            f"<span class='{cls}'>{_f(r.psi)}</span>",
            _pct(r.missing_share),
            _pct(r.reference_missing_share),
            _pct(r.out_of_range_share),
        ]

    table = _table(
        ["feature", "source", "PSI", "missing", "missing in training", "out of range"],
        (row(r) for r in worst),
        {2, 3, 4, 5},
    )
    return (
        f"<p class='sub'>Current rolling windows at report time ({windows}). PSI > 0.1 is a "
        f"moderate shift, > {PSI_THRESHOLD} a significant one.</p>"
        f"<div class='panel'><img alt='drift' src='data:image/png;base64,{chart}'></div>"
        f"<div class='panel'>{table}</div>"
    )


def render_html(data: ReportData) -> str:
    """The report page."""
    ev = data.evaluation
    start, end = ev.from_, ev.to
    versions = [v.version for v in ev.versions]
    used = [v for v in versions if any(t.version == v for t in ev.totals)]
    colors = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(used or versions)}
    production = ev.production_version
    totals = ev.totals
    n_all = sum(t.n for t in totals)
    predictions = sum(v.predictions for v in ev.volume)
    fallback = sum(v.fallback for v in ev.volume)
    prod = next((t for t in totals if t.version == production), None)
    ece = expected_calibration_error(ev.calibration, production) if production else None
    max_psi = max((r.psi for r in data.drift if math.isfinite(r.psi)), default=None)
    rollbacks = _rollbacks(ev.stage_moves)
    promotions = [
        m for m in ev.stage_moves if m.to_stage is Stage.PRODUCTION and m.action == "promote"
    ]
    cards = "".join(
        [
            _card(
                "production",
                escape(production or "none"),
                data.model_name,
                "small" if production and len(production) > 12 else "",
            ),
            _card("evaluated signals", f"{n_all:,}", f"{predictions:,} predictions logged"),
            _card(
                "fallback share",
                _pct(fallback / predictions if predictions else None),
                f"{fallback:,} answered without a model",
                "bad" if predictions and fallback / predictions > 0.05 else "",
            ),
            _card(
                "win rate (prod)",
                _pct(prod.win_rate if prod else None),
                f"predicted {_pct(prod.mean_p if prod else None)}",
            ),
            _card(
                "Brier (prod)",
                _f(prod.brier if prod else None),
                f"log loss {_f(prod.log_loss if prod else None)}",
            ),
            _card(
                "ECE (prod)",
                _f(ece),
                "n-weighted |p − observed|",
                "bad" if ece is not None and ece > ECE_WARN else "",
            ),
            _card("experiments", str(len(ev.experiments)), f"{len(promotions)} promotion(s)"),
            _card("rollbacks", str(len(rollbacks)), "stage moves back", "bad" if rollbacks else ""),
            _card(
                "max PSI",
                _f(max_psi),
                "live features",
                "bad" if max_psi is not None and max_psi > PSI_THRESHOLD else "",
            ),
        ]
    )
    version_rows = []
    for t in totals:
        version_rows.append(
            [
                _swatch(t.version, colors)
                + (" <span class='pill'>production</span>" if t.version == production else ""),
                f"{t.predictions:,}",
                f"{t.n:,}",
                _pct(t.win_rate),
                _pct(t.mean_p),
                _f(t.brier),
                _f(t.log_loss),
                _f(expected_calibration_error(ev.calibration, t.version)),
            ]
        )
    versions_table = _table(
        ["version", "predictions", "evaluated", "win rate", "mean p", "Brier", "log loss", "ECE"],
        version_rows,
        {1, 2, 3, 4, 5, 6, 7},
    )
    weeks_table = _table(
        ["week from", "version", "evaluated", "win rate", "mean p", "Brier", "log loss"],
        (
            [
                max(w.week, start.date()).isoformat(),
                _swatch(w.version, colors),
                f"{w.n:,}",
                _pct(w.win_rate),
                _pct(w.mean_p),
                _f(w.brier),
                _f(w.log_loss),
            ]
            for w in weekly(ev.daily)
        ),
        {2, 3, 4, 5, 6},
    )
    experiments_table = _table(
        [
            "started",
            "kind",
            "control → candidate",
            "share",
            "state",
            "decision",
            "winner",
            "p-value",
            "ended",
            "reason",
        ],
        (
            [
                _when(e.started_at),
                escape(e.kind),
                f"{escape(e.control_version)} → {escape(e.candidate_version)}",
                _pct(e.candidate_share),
                escape(e.state),
                f"<span class='pill {escape(e.decision or '')}'>{escape(e.decision or '–')}</span>",
                escape(e.winner or "–"),
                _f(e.p_value, 4),
                _when(e.ended_at),
                escape(e.end_reason or ""),
            ]
            for e in ev.experiments
        ),
        {3, 7},
    )
    moves_table = _table(
        ["at", "version", "move", "action", "actor", "reason"],
        (
            [
                _when(m.at),
                escape(m.version),
                f"{escape(m.from_stage or '–')} → {escape(m.to_stage)}",
                f"<span class='pill{' rollback' if 'rollback' in m.action else ''}'>"
                f"{escape(m.action)}</span>",
                escape(m.actor),
                escape(m.reason),
            ]
            for m in ev.stage_moves
        ),
        set(),
    )
    calibration = (
        f"<img alt='calibration' src='data:image/png;base64,"
        f"{calibration_chart(ev.calibration, colors)}'>"
        if ev.calibration
        else "<p class='empty'>no evaluated predictions</p>"
    )
    performance = (
        f"<img alt='performance' src='data:image/png;base64,{performance_chart(ev.daily, colors)}'>"
        if any(r.n for r in ev.daily)
        else "<p class='empty'>no evaluated predictions</p>"
    )
    timeline = (
        f"<img alt='timeline' src='data:image/png;base64,"
        f"{timeline_chart(ev.stage_moves, ev.experiments, versions, start=start, end=end)}'>"
        if ev.stage_moves or ev.experiments
        else "<p class='empty'>no stage moves or experiments in this month</p>"
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in data.notes)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(data.model_name)} — evaluation {escape(data.month)}</title>
<style>{_CSS}</style></head><body><main>
<h1>{escape(data.model_name)} — monthly evaluation, {start:%B %Y}</h1>
<div class="sub">Window {start:%Y-%m-%d} to {end:%Y-%m-%d} (UTC, by prediction time) ·
generated {data.generated_at:%Y-%m-%d %H:%M} UTC · predictions joined with their outcomes in
the registry; drift from the services' live gauges</div>
<div class="cards">{cards}</div>
<div class="panel"><b>What to look at</b>{_summary(data, colors)}</div>
<h2>Calibration and versions</h2>
<div class="row"><div class="panel">{calibration}</div>
<div class="panel">{versions_table}<p class="sub">Evaluated = the first prediction of a signal
by a version, with a known outcome (win = 1; loss and breakeven = 0). ECE uses
{ev.calibration_bins} equal-width bins.</p></div></div>
<h2>Performance over time</h2>
<div class="panel">{performance}</div>
<div class="panel">{weeks_table}</div>
<h2>Promotions, rollbacks and experiments</h2>
<div class="panel">{timeline}</div>
<div class="panel">{experiments_table}</div>
<div class="panel">{moves_table}</div>
<h2>Drift and data quality</h2>
{_drift_section(data)}
{f"<h2>Notes</h2><ul class='sub'>{notes}</ul>" if notes else ""}
</main></body></html>
"""
