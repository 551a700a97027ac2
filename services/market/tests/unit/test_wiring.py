"""Unit tests of market's wiring: the window query, the gate's error, bar files, the event."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import BarClosed, SignalLabeled
from hindsight.market.bulk import DATASETS, dataset_path, read_bars
from hindsight.market.domain.bars import Bar
from hindsight.market.domain.integrity import Violation, check_bar
from hindsight.market.domain.labels import LabelSpec, SignalLabels
from hindsight.market.ingest import BarsRejected, Rejected, bar_from_event
from hindsight.market.labeler import labeled_event
from hindsight.market.schemas import parse_query
from hindsight.market.storage import BarIn, PendingSignal

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_a_window_query_names_the_failing_field() -> None:
    good = {"symbol": "EURUSD", "timeframe": "1h", "end": "2024-01-02T00:00:00Z", "n": "5"}
    query = parse_query(good, max_n=100)
    assert (query.symbol, query.timeframe, query.n) == ("EURUSD", "1h", 5)
    assert query.end == datetime(2024, 1, 2, tzinfo=UTC)
    for bad, field in [
        ({**good, "timeframe": "H1"}, "timeframe"),
        ({**good, "end": "2024-01-02T00:00:00"}, "end"),  # no timezone: not point in time
        ({**good, "end": "yesterday"}, "end"),
        ({k: v for k, v in good.items() if k != "symbol"}, "symbol"),
        ({**good, "n": "-1"}, "n"),
        ({**good, "n": "101"}, "n"),
        ({**good, "extra": "1"}, "extra"),
    ]:
        with pytest.raises(InvalidInputError) as caught:
            parse_query(bad, max_n=100)
        assert caught.value.field == field, caught.value


def test_the_gate_error_names_the_first_field_and_every_reason() -> None:
    bar = Bar("EURUSD", "1h", T0, open=1.0, high=0.9, low=1.1, close=1.0, volume=-1.0)
    violations = check_bar(bar, previous=None)
    error = BarsRejected([Rejected(BarIn(bar=bar, source="t"), violations)])
    assert error.field == "high"
    assert str(error).startswith("high: ")
    assert "volume: " in str(error)
    assert "EURUSD 1h 2024-01-01T00:00:00+00:00" in str(error)
    assert isinstance(error, InvalidInputError)  # so the consumer dead-letters it at once
    assert Rejected(BarIn(bar=bar, source="t"), [Violation("ts", "x")]).describe() == "ts: x"


def test_a_bar_event_becomes_a_domain_bar() -> None:
    event = BarClosed.create(
        source="feed",
        symbol="EURUSD",
        timeframe="1h",
        ts="2024-01-01T00:00:00+00:00",
        open=1.0,
        high=1.2,
        low=0.9,
        close=1.1,
        volume=10,
        trades=3,
    )
    item = bar_from_event(event)
    assert item.bar == Bar("EURUSD", "1h", T0, 1.0, 1.2, 0.9, 1.1, 10.0)
    assert (item.trades, item.vwap, item.source) == (3, None, "feed")


def test_labels_become_a_signal_labeled_event() -> None:
    spec = LabelSpec()
    labels = SignalLabels(6, 1.2, 0.4, 1.0, 1, 120.0, None, 1.2, 0.4, 1.2, 0.4, 0.3, -0.15)
    signal = PendingSignal("s1", spec.spec_hash(), "EURUSD", "1h", "buy", T0, None)
    event = labeled_event(signal, labels, label_spec=spec.spec_hash(), cluster="H")
    assert isinstance(event, SignalLabeled)
    assert event.message_id() == f"signal.labeled:s1:{spec.spec_hash()}"
    assert (event.y_entry, event.t_hit_tp, event.t_hit_sl) == (1, 120.0, None)
    assert (event.liquidity_cluster, event.symbol, event.best_offset_katr) == ("H", "EURUSD", -0.15)


def test_csv_and_parquet_files_read_the_same(tmp_path: Path) -> None:
    csv_file = tmp_path / "bars.csv"
    csv_file.write_text(
        "Date,Open,High,Low,Close,Volume\n"
        "2024-01-01 00:00:00,1.0,1.2,0.9,1.1,10\n"
        "2024-01-01T01:00:00+01:00,1.1,1.3,1.0,nan-ish,11\n"
    )
    bars = read_bars(csv_file, symbol="EURUSD", timeframe="1h")
    assert [b.bar.ts for b in bars] == [T0, T0]  # naive = UTC; +01:00 converted
    assert bars[1].bar.close != bars[1].bar.close  # not a number: NaN, for the gate to name
    table = pa.table(
        {
            "ts": [T0],
            "open": [1.0],
            "high": [1.2],
            "low": [0.9],
            "close": [1.1],
            "volume": [10.0],
            "trades": [4],
        }
    )
    pq.write_table(table, tmp_path / "bars.parquet")
    parquet = read_bars(tmp_path / "bars.parquet", symbol="EURUSD", timeframe="1h")
    assert parquet[0].bar == bars[0].bar and parquet[0].trades == 4
    (tmp_path / "short.csv").write_text("ts,open,high\n2024-01-01,1,2\n")
    with pytest.raises(InvalidInputError, match="low, close, volume"):
        read_bars(tmp_path / "short.csv", symbol="X", timeframe="1h")


@pytest.mark.parametrize("name", ["EURUSD", "GOOG"])
def test_the_shipped_datasets_pass_the_gate(name: str) -> None:
    dataset = DATASETS[name]
    assert dataset.timeframe is not None
    items = read_bars(dataset_path(name), symbol=name, timeframe=dataset.timeframe)
    assert len(items) > 2000
    previous: Bar | None = None
    bad = []
    for item in items:
        violations = check_bar(item.bar, previous=previous)
        if violations:
            bad.append((item.bar.ts, violations))
        else:
            previous = item.bar
    assert bad == []


def test_btcusd_is_read_as_monthly_bars_opening_on_the_first() -> None:
    dataset = DATASETS["BTCUSD"]
    assert (dataset.timeframe, dataset.dated) == ("1mo", "period_end")
    raw = read_bars(dataset_path("BTCUSD"), symbol="BTCUSD", timeframe="1mo")
    days = {(b.bar.ts.month, b.bar.ts.day) for b in raw[:12]}
    assert (1, 31) in days and (2, 29) in days  # dated on month ends (2012 is a leap year)
    items = read_bars(dataset_path("BTCUSD"), symbol="BTCUSD", timeframe="1mo", dated=dataset.dated)
    assert len(items) == 156
    assert items[0].bar.ts == datetime(2012, 1, 1, tzinfo=UTC)
    assert items[-1].bar.ts == datetime(2024, 12, 1, tzinfo=UTC)
    previous = None
    for item in items:
        assert item.bar.ts.day == 1 and item.bar.ts.hour == 0
        assert check_bar(item.bar, previous=previous) == []
        previous = item.bar


def test_period_end_dates_are_only_moved_when_they_are_a_month_end(tmp_path: Path) -> None:
    path = tmp_path / "monthly.csv"
    path.write_text(
        "date,open,high,low,close,volume\n"
        "2024-02-29,1,2,0.5,1.5,10\n"  # leap-year February's last day
        "2023-02-28,1,2,0.5,1.5,10\n"  # common-year February's last day
        "2024-03-15,1,2,0.5,1.5,10\n"  # mid-month: kept, so the gate rejects it
    )
    items = read_bars(path, symbol="BTCUSD", timeframe="1mo", dated="period_end")
    assert [i.bar.ts for i in items] == [
        datetime(2024, 2, 1, tzinfo=UTC),
        datetime(2023, 2, 1, tzinfo=UTC),
        datetime(2024, 3, 15, tzinfo=UTC),
    ]
    assert [v.field for v in check_bar(items[2].bar, previous=None)] == ["ts"]
    with pytest.raises(InvalidInputError) as caught:
        read_bars(path, symbol="BTCUSD", timeframe="1d", dated="period_end")
    assert caught.value.field == "dated"
