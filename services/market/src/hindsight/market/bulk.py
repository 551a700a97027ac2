"""Bar files: CSV or Parquet in, :class:`~hindsight.market.storage.BarIn` out.

Columns, matched case-insensitively: a time column (``ts``, ``time``, ``timestamp``,
``datetime``, ``date``, or the first column when it has no name, as pandas writes an index)
holding the bar's OPEN time, then ``open``, ``high``, ``low``, ``close``, ``volume``; optional
``trades`` and ``vwap``. Times without a timezone are read as UTC. A value that is not a
number is read as NaN, so the integrity gate reports it by field instead of the file
failing as a whole.

Files dated at the END of a period (as the ``backtesting`` package dates its monthly BTCUSD
on each month's last day) pass ``dated="period_end"``: a row dated on a month's last day is
the bar that opened on that month's first, 00:00 UTC. A row dated on any other day is kept
as it is, so the gate rejects it as misaligned instead of it being moved silently.
"""

from __future__ import annotations

import calendar
import csv
import importlib.util
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from hindsight.common.errors import InvalidInputError
from hindsight.market.domain.bars import Bar, month_start
from hindsight.market.storage import BarIn

__all__ = ["DATASETS", "Dataset", "Dated", "dataset_path", "read_bars"]

_TIME_NAMES = ("ts", "time", "timestamp", "datetime", "date", "")
_REQUIRED = ("open", "high", "low", "close", "volume")

Dated = Literal["open", "period_end"]
"""What a file's time column holds: each bar's open time, or the last day of its period."""


class Dataset:
    """One CSV the ``backtesting`` package ships (``backtesting.test``)."""

    def __init__(self, name: str, *, timeframe: str, note: str, dated: Dated = "open") -> None:
        self.name = name
        self.timeframe = timeframe
        self.note = note
        self.dated: Dated = dated


DATASETS: Mapping[str, Dataset] = {
    "EURUSD": Dataset("EURUSD", timeframe="1h", note="hourly EUR/USD, 2017-04 to 2018-02"),
    "GOOG": Dataset("GOOG", timeframe="1d", note="daily NASDAQ:GOOG, 2004 to 2013"),
    # Dated on each month's last day: imported as bars opening on the month's first.
    "BTCUSD": Dataset(
        "BTCUSD",
        timeframe="1mo",
        note="monthly BTC/USD dated on each month's last day, 2012 to 2024",
        dated="period_end",
    ),
}


def dataset_path(name: str) -> Path:
    """Where the ``backtesting`` package keeps ``<name>.csv``."""
    spec = importlib.util.find_spec("backtesting.test")
    if spec is None or spec.origin is None:
        raise InvalidInputError(
            "the backtesting package is not installed (hindsight-market[datasets])",
            field="dataset",
        )
    return Path(spec.origin).parent / f"{name}.csv"


def _time(text: str, *, row: int) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInputError(f"row {row}: {text!r} is not a date-time", field="ts") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _month_end_to_open(ts: datetime, timeframe: str) -> datetime:
    """A monthly bar dated on its month's last day (00:00 UTC) opened on the month's first."""
    if timeframe != "1mo" or ts != ts.replace(hour=0, minute=0, second=0, microsecond=0):
        return ts
    if ts.day != calendar.monthrange(ts.year, ts.month)[1]:
        return ts
    return month_start(ts)


def _number(value: object) -> float:
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return math.nan


def _optional(value: object) -> float | None:
    if value is None or value == "":
        return None
    number = _number(value)
    return None if math.isnan(number) else number


def _columns(names: Sequence[str]) -> dict[str, str]:
    lowered = {name.strip().lower(): name for name in names}
    found: dict[str, str] = {}
    for candidate in _TIME_NAMES:
        if candidate in lowered:
            found["ts"] = lowered[candidate]
            break
    missing = [c for c in _REQUIRED if c not in lowered]
    if "ts" not in found:
        missing.insert(0, "ts")
    if missing:
        raise InvalidInputError(f"missing column(s): {', '.join(missing)}", field="columns")
    for name in (*_REQUIRED, "trades", "vwap"):
        if name in lowered:
            found[name] = lowered[name]
    return found


def _rows(path: Path) -> Iterator[Mapping[str, object]]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        yield from table.to_pylist()
        return
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def read_bars(
    path: Path, *, symbol: str, timeframe: str, source: str = "import", dated: Dated = "open"
) -> list[BarIn]:
    """Every row of ``path`` as a bar of ``symbol`` / ``timeframe`` (file order kept)."""
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a file", field="file")
    if dated == "period_end" and timeframe != "1mo":
        raise InvalidInputError(
            f"dated='period_end' is only known for 1mo bars, not {timeframe!r}", field="dated"
        )
    bars: list[BarIn] = []
    columns: dict[str, str] | None = None
    for index, row in enumerate(_rows(path), start=1):
        if columns is None:
            columns = _columns(list(row))
        stamp = row[columns["ts"]]
        ts = (
            (stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC))
            if isinstance(stamp, datetime)
            else _time(str(stamp), row=index)
        )
        if dated == "period_end":
            ts = _month_end_to_open(ts, timeframe)
        trades = _optional(row.get(columns.get("trades", ""), None))
        bars.append(
            BarIn(
                bar=Bar(
                    symbol=symbol,
                    timeframe=timeframe,
                    ts=ts,
                    open=_number(row[columns["open"]]),
                    high=_number(row[columns["high"]]),
                    low=_number(row[columns["low"]]),
                    close=_number(row[columns["close"]]),
                    volume=_number(row[columns["volume"]]),
                ),
                source=source,
                trades=None if trades is None else int(trades),
                vwap=_optional(row.get(columns.get("vwap", ""), None)),
            )
        )
    return bars
