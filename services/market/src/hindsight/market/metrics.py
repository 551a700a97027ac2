"""The market service's Prometheus metrics (``hindsight_market_*``), every series at 0 first."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from hindsight.common.metrics import init_series
from hindsight.market.domain.bars import TIMEFRAMES

__all__ = [
    "BAR_FIELDS",
    "BARS",
    "BAR_OUTCOMES",
    "BAR_REJECTIONS",
    "CLUSTERS",
    "GAPS",
    "LABELS",
    "OUTBOX_BACKLOG",
    "PENDING_SIGNALS",
    "SIGNALS",
    "WINDOW_REQUESTS",
]

BAR_OUTCOMES = ("stored", "duplicate", "corrected", "rejected")
BAR_FIELDS = ("symbol", "timeframe", "ts", "open", "high", "low", "close", "volume")

BARS = Counter(
    "hindsight_market_bars_total",
    "Bars through the integrity gate by outcome (stored new, duplicate, corrected, rejected).",
    ["source", "outcome"],
)
BAR_REJECTIONS = Counter(
    "hindsight_market_bar_rejections_total",
    "Integrity violations of rejected bars, by the field named.",
    ["field"],
)
GAPS = Counter(
    "hindsight_market_gaps_total",
    "Bars missing against the symbol's calendar (reported, never filled), by timeframe.",
    ["timeframe"],
)
SIGNALS = Counter(
    "hindsight_market_signals_total",
    "signal.features seen by the Back-Labeler: queued (buy/sell) or skipped (hold); "
    "adopted: signals known under another label spec queued again under the current one.",
    ["outcome"],
)
LABELS = Counter(
    "hindsight_market_labels_total",
    "Signals labelled (a label row and its signal.labeled queued), or failed for good; "
    "relabelled after a corrected bar (a new revision), or kept when the correction left "
    "the labels unchanged or could not be labelled.",
    ["outcome"],
)
PENDING_SIGNALS = Gauge(
    "hindsight_market_pending_signals",
    "Signals waiting for the bars of their horizon (waiting) or never labellable (failed).",
    ["state"],
)
OUTBOX_BACKLOG = Gauge(
    "hindsight_market_outbox_backlog", "signal.labeled events committed but not yet published."
)
CLUSTERS = Gauge("hindsight_market_cluster_symbols", "Symbols per liquidity cluster.", ["cluster"])
WINDOW_REQUESTS = Counter(
    "hindsight_market_window_requests_total",
    "Bar windows asked for, by transport (http, nats) and outcome (ok, invalid, error).",
    ["transport", "outcome"],
)

init_series(BARS, ("bar.closed", "import"), BAR_OUTCOMES)
init_series(BAR_REJECTIONS, (*BAR_FIELDS, "other"))
init_series(GAPS, tuple(TIMEFRAMES))
init_series(SIGNALS, ("queued", "hold_skipped", "adopted"))
init_series(LABELS, ("labeled", "failed", "relabeled", "relabel_unchanged", "relabel_failed"))
init_series(PENDING_SIGNALS, ("waiting", "failed"))
init_series(CLUSTERS, ("H", "M", "L"))
init_series(WINDOW_REQUESTS, ("http", "nats"), ("ok", "invalid", "error"))
OUTBOX_BACKLOG.set(0)
