"""The report's figures: matplotlib (Agg) → base64 PNG for inline ``<img>`` tags."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hindsight.common.registry_api import (  # noqa: E402
    CalibrationBin,
    DailyMetrics,
    ExperimentSpan,
    StageMove,
)

from .source import DriftRow  # noqa: E402

__all__ = [
    "PALETTE",
    "calibration_chart",
    "drift_chart",
    "performance_chart",
    "png_base64",
    "timeline_chart",
]

PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"]
# Keyword arguments of matplotlib's Axes.grid, which types them as Any.
_GRID: dict[str, Any] = {"color": "#e5e7eb", "linewidth": 0.8}

plt.rcParams.update(
    {
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.edgecolor": "#9ca3af",
        "figure.dpi": 110,
    }
)


def _num_date(value: datetime) -> float:
    return float(mdates.date2num(value))  # type: ignore[no-untyped-call]


def _day_format() -> mdates.DateFormatter:
    return mdates.DateFormatter("%d %b")  # type: ignore[no-untyped-call]


def png_base64(fig: Figure) -> str:
    """Render and close ``fig``; the PNG as base64 text."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def calibration_chart(bins: Sequence[CalibrationBin], colors: dict[str, str]) -> str:
    """Reliability curve per version (marker area ~ n) over a histogram of predictions."""
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.4, 6.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    top.plot([0, 1], [0, 1], color="#9ca3af", linestyle="--", linewidth=1, label="perfect")
    versions = sorted({b.version for b in bins}, key=list(colors).index)
    width = 0.1 / max(1, len(versions))
    biggest = max((b.n for b in bins), default=1)
    for i, version in enumerate(versions):
        mine = sorted((b for b in bins if b.version == version), key=lambda b: b.bin)
        x = [_num(b.mean_p) for b in mine]
        y = [_num(b.win_rate) for b in mine]
        n = [b.n for b in mine]
        color = colors[version]
        top.plot(x, y, color=color, linewidth=1.8, label=version)
        top.scatter(x, y, s=[20 + 180 * k / biggest for k in n], color=color, alpha=0.8, zorder=3)
        bottom.bar(
            [b.lower + width * (i + 0.5) for b in mine],
            n,
            width=width * 0.9,
            color=color,
        )
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed win rate")
    top.set_title("Reliability: predicted p vs observed win rate")
    top.grid(**_GRID)
    top.legend(loc="upper left", fontsize=8, frameon=False)
    bottom.set(xlabel="predicted p_success (bin mean)", ylabel="signals")
    bottom.grid(axis="y", **_GRID)
    return png_base64(fig)


def performance_chart(daily: Sequence[DailyMetrics], colors: dict[str, str]) -> str:
    """Daily win rate (with mean predicted p), Brier, log loss and n per version."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.2), sharex=True)
    (win_ax, brier_ax), (loss_ax, n_ax) = axes
    versions = [v for v in colors if any(r.version == v for r in daily)]
    for version in versions:
        rows = sorted((r for r in daily if r.version == version and r.n), key=lambda r: r.day)
        days = [r.day for r in rows]
        color = colors[version]
        win_ax.plot(
            days,
            [_num(r.win_rate) for r in rows],
            color=color,
            marker="o",
            ms=3,
            label=f"{version} observed",
        )
        win_ax.plot(
            days,
            [_num(r.mean_p) for r in rows],
            color=color,
            linestyle=":",
            label=f"{version} predicted",
        )
        brier_ax.plot(days, [_num(r.brier) for r in rows], color=color, marker="o", ms=3)
        loss_ax.plot(days, [_num(r.log_loss) for r in rows], color=color, marker="o", ms=3)
        n_ax.bar(days, [r.n for r in rows], color=color, alpha=0.75, width=0.8, label=version)
    win_ax.set_title("Win rate: observed (solid) vs mean predicted (dotted)")
    win_ax.set_ylim(0, 1)
    brier_ax.set_title("Brier score (lower is better)")
    loss_ax.set_title("Log loss (lower is better)")
    n_ax.set_title("Evaluated signals per day")
    for ax in axes.flat:
        ax.grid(**_GRID)
        ax.xaxis.set_major_formatter(_day_format())
    win_ax.legend(fontsize=7, frameon=False, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    return png_base64(fig)


_MOVE_STYLE = {
    "production": ("^", "#16a34a"),
    "staging": ("s", "#0891b2"),
    "candidate": ("o", "#6b7280"),
    "archived": ("x", "#9ca3af"),
    "refused": ("X", "#dc2626"),
}
_DECISION_COLOR: dict[str | None, str] = {
    "promote": "#16a34a",
    "keep": "#6b7280",
    "inconclusive": "#ca8a04",
    None: "#2563eb",
}


def timeline_chart(
    moves: Sequence[StageMove],
    experiments: Sequence[ExperimentSpan],
    versions: Sequence[str],
    *,
    start: datetime,
    end: datetime,
) -> str:
    """Stage moves (markers) and experiments (bars) per version over the month."""
    shown = [
        v
        for v in versions
        if any(m.version == v for m in moves)
        or any(v in (e.candidate_version, e.control_version) for e in experiments)
    ]
    shown = shown or list(versions)
    row = {v: i for i, v in enumerate(shown)}
    fig, ax = plt.subplots(figsize=(11, 0.9 + 0.55 * max(2, len(shown))))
    for e in experiments:
        if e.candidate_version not in row:
            continue
        left = max(e.started_at, start)
        right = min(e.ended_at or end, end)
        color = _DECISION_COLOR.get(e.decision, "#2563eb")
        ax.barh(
            row[e.candidate_version],
            _num_date(right) - _num_date(left),
            left=_num_date(left),
            height=0.36,
            color=color,
            alpha=0.35,
        )
        ax.text(
            _num_date(left),
            row[e.candidate_version] + 0.28,
            f"{e.kind} → {e.decision or e.state}",
            fontsize=7,
            color=color,
        )
    seen: set[str] = set()
    for m in moves:
        if m.version not in row:
            continue
        action = m.action
        to_stage = str(m.to_stage)
        marker, color = _MOVE_STYLE.get(to_stage, ("o", "#6b7280"))
        if "rollback" in action:
            marker, color = "v", "#dc2626"
        label = "rollback" if "rollback" in action else to_stage
        ax.scatter(
            _num_date(m.at),
            row[m.version],
            marker=marker,
            s=70,
            color=color,
            zorder=3,
            label=None if label in seen else label,
        )
        seen.add(label)
    ax.set_yticks(range(len(shown)), shown, fontsize=8)
    ax.set_ylim(-0.6, len(shown) - 0.4)
    ax.set_xlim(_num_date(start), _num_date(end))
    ax.xaxis.set_major_formatter(_day_format())
    ax.grid(axis="x", **_GRID)
    ax.set_title("Stage moves (markers) and experiments (bars, by decision)")
    if seen:
        ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return png_base64(fig)


def drift_chart(rows: Sequence[DriftRow], *, threshold: float, top: int = 20) -> str:
    """PSI per feature (top ``top``) and missing / out-of-range shares, per source."""
    worst = sorted(rows, key=lambda r: -r.psi if math.isfinite(r.psi) else math.inf)[:top]
    worst.reverse()
    labels = [f"{r.feature}  [{r.source.split(' (')[0]}]" for r in worst]
    fig, (psi_ax, share_ax) = plt.subplots(
        1, 2, figsize=(11, 0.7 + 0.32 * max(3, len(worst))), sharey=True
    )
    psi = [r.psi if math.isfinite(r.psi) else 0.0 for r in worst]
    colors = [
        "#dc2626" if p > threshold else "#ca8a04" if p > threshold / 2 else "#16a34a" for p in psi
    ]
    psi_ax.barh(labels, psi, color=colors)
    psi_ax.axvline(threshold / 2, color="#ca8a04", linestyle=":", linewidth=1)
    psi_ax.axvline(threshold, color="#dc2626", linestyle="--", linewidth=1)
    psi_ax.set_title(f"PSI per feature (alert > {threshold:g})")
    psi_ax.grid(axis="x", **_GRID)
    y = range(len(worst))
    missing = [0.0 if math.isnan(r.missing_share) else r.missing_share for r in worst]
    outside = [0.0 if math.isnan(r.out_of_range_share) else r.out_of_range_share for r in worst]
    share_ax.barh([i + 0.2 for i in y], missing, height=0.4, color="#9333ea", label="missing")
    share_ax.barh(
        [i - 0.2 for i in y], outside, height=0.4, color="#0891b2", label="out of training range"
    )
    reference = [r.reference_missing_share for r in worst]
    share_ax.scatter(
        reference,
        [i + 0.2 for i in y],
        marker="|",
        s=120,
        color="#111827",
        label="missing in training",
        zorder=3,
    )
    share_ax.set_xlim(0, max(0.05, *missing, *outside) * 1.1)
    share_ax.set_title("Data quality: share of rows")
    share_ax.legend(fontsize=8, frameon=False, loc="lower right")
    share_ax.grid(axis="x", **_GRID)
    fig.tight_layout()
    return png_base64(fig)
