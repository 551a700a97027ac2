"""Back-Labeler throughput: ``label_signal`` over a realistic backlog, with its parts.

The backlog: three series (two of 1h bars, one of 1d bars, geometric random walks with
intrabar ranges), 20,000 buy/sell signals at random bar closes (half with an entry price,
half at the last close), labelled with the default ``LabelSpec`` (ATR over a 100-bar window,
6-bar horizon, 5 offsets). Each signal's history and future are found as the service's
Back-Labeler finds them (bisect on the bars' open and close times, then slices).

Prints labels/s for the whole call and, as the baseline of its parts, the ATR alone
(``indicators.atr`` on the same windows) and the path alone (``label_from_atr``, labels
given the entry and the ATR). Asserts no timings. ``HINDSIGHT_BENCH_LABEL_SIGNALS`` changes
the signal count. Run with `pytest -m bench bench/test_bench_labels.py -s`.
"""

from __future__ import annotations

import bisect
import math
import os
import random
import time
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pytest

from hindsight.market.domain.bars import Bar, timeframe_delta
from hindsight.market.domain.indicators import atr
from hindsight.market.domain.labels import LabelSpec, label_from_atr, label_signal

pytestmark = pytest.mark.bench

N_SIGNALS = int(os.environ.get("HINDSIGHT_BENCH_LABEL_SIGNALS", "20000"))
SERIES = (
    ("BTCUSD", "1h", 30_000, 0.006),
    ("EURUSD", "1h", 30_000, 0.0015),
    ("GOOG", "1d", 5_000, 0.015),
)
START = datetime(2020, 1, 1, tzinfo=UTC)


def random_walk(symbol: str, timeframe: str, n: int, vol: float, rng: random.Random) -> list[Bar]:
    delta = timeframe_delta(timeframe)
    price, bars = 100.0, []
    for i in range(n):
        close = price * math.exp(rng.gauss(0.0, vol))
        high = max(price, close) * (1 + abs(rng.gauss(0.0, vol / 2)))
        low = min(price, close) * (1 - abs(rng.gauss(0.0, vol / 2)))
        bars.append(Bar(symbol, timeframe, START + i * delta, price, high, low, close, 1e3))
        price = close
    return bars


def test_bench_label_signal() -> None:
    rng = random.Random(15)
    spec = LabelSpec()
    before, after = spec.bars_before_needed(), spec.bars_after_needed()
    series = {s: random_walk(s, tf, n, vol, rng) for s, tf, n, vol in SERIES}
    index = {s: ([b.ts for b in bars], [b.end for b in bars]) for s, bars in series.items()}
    signals = []
    for _ in range(N_SIGNALS):
        symbol = rng.choice(list(series))
        bars = series[symbol]
        i = rng.randrange(before, len(bars) - after)
        side: Literal["buy", "sell"] = rng.choice(["buy", "sell"])
        entry = bars[i - 1].close * (1 + rng.gauss(0.0, 0.001)) if rng.random() < 0.5 else None
        signals.append((symbol, bars[i].ts, side, entry))

    t = time.perf_counter()
    windows = []
    for symbol, ts, _, _ in signals:
        bars = series[symbol]
        opens, closes = index[symbol]
        closed = bisect.bisect_right(closes, ts)
        first = bisect.bisect_left(opens, ts)
        windows.append((bars[max(0, closed - before) : closed], bars[first : first + after]))
    slicing_s = time.perf_counter() - t

    t = time.perf_counter()
    labels = [
        label_signal(
            side=side, signal_ts=ts, entry_price=entry, history=history, future=future, spec=spec
        )
        for (_, ts, side, entry), (history, future) in zip(signals, windows, strict=True)
    ]
    total_s = time.perf_counter() - t

    t = time.perf_counter()
    atrs = [
        float(
            atr(
                np.array([b.high for b in h]),
                np.array([b.low for b in h]),
                np.array([b.close for b in h]),
                spec.atr_period,
            )[-1]
        )
        for h, _ in windows
    ]
    atr_s = time.perf_counter() - t

    t = time.perf_counter()
    for (_, ts, side, entry), (history, future), a in zip(signals, windows, atrs, strict=True):
        label_from_atr(
            side=side,
            signal_ts=ts,
            entry=history[-1].close if entry is None else entry,
            atr_value=a,
            future=future,
            spec=spec,
        )
    path_s = time.perf_counter() - t

    assert len(labels) == N_SIGNALS
    n = N_SIGNALS
    n_bars = sum(len(b) for b in series.values())
    print(f"\n{n:,} signals over {n_bars:,} bars, spec {spec.spec_hash()}")
    print(f"finding windows (bisect + slices): {n / slicing_s:,.0f} signals/s")
    each = total_s * 1e6 / n
    print(f"label_signal:                  {n / total_s:,.0f} labels/s ({each:.0f} µs each)")
    print(f"  ATR alone (indicators.atr):  {n / atr_s:,.0f}/s ({atr_s / total_s:.0%} of it)")
    print(f"  path alone (label_from_atr): {n / path_s:,.0f}/s ({path_s / total_s:.0%} of it)")
    wins = sum(x.y_entry for x in labels) / n
    mean_r = sum(x.realised_r for x in labels) / n
    print(f"y_entry rate {wins:.3f}, mean realised_r {mean_r:+.3f} (a random walk: ~0.5, ~0)")
