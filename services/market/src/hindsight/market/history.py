"""The recent bars of each series, kept in process so a batch's derived series need not read
them back from PostgreSQL.

An entry holds a series' last ``CONTEXT_BARS`` bars (all of them when it has fewer) as
numpy columns, plus what tells a stale entry from a current one: the newest bar's values
and the series' last correction id. :class:`BarIngest` fills an entry from the table on
first use, uses it only when the table's newest bar and last correction still match it
(read under the series lock, so another writer's bars or corrections are seen), and puts
the updated entry back only after its transaction commits.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from hindsight.market.derived import CONTEXT_BARS

__all__ = ["History", "HistoryCache"]

Column = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class History:
    """A series' last ``CONTEXT_BARS`` bars (oldest first) and its last correction id."""

    ts: list[datetime]
    open: Column
    high: Column
    low: Column
    close: Column
    volume: Column
    correction_mark: int

    def __post_init__(self) -> None:
        sizes = {len(self.ts), *(len(c) for c in self.columns())}
        if len(sizes) != 1 or len(self.ts) > CONTEXT_BARS or not self.ts:
            raise ValueError(f"history: 1..{CONTEXT_BARS} bars of equal columns, got {sizes}")

    def columns(self) -> tuple[Column, Column, Column, Column, Column]:
        """open, high, low, close, volume."""
        return (self.open, self.high, self.low, self.close, self.volume)

    @property
    def newest(self) -> datetime:
        """The open time of the series' newest bar."""
        return self.ts[-1]

    def newest_values(self) -> tuple[float, float, float, float, float]:
        """OHLCV of the series' newest bar."""
        o, h, lo, c, v = (float(column[-1]) for column in self.columns())
        return (o, h, lo, c, v)

    @classmethod
    def last_of(
        cls,
        ts: list[datetime],
        columns: tuple[Column, Column, Column, Column, Column],
        *,
        correction_mark: int,
    ) -> History:
        """The last ``CONTEXT_BARS`` bars of these (the whole of a series' tail)."""
        o, h, lo, c, v = (column[-CONTEXT_BARS:].copy() for column in columns)
        return cls(ts[-CONTEXT_BARS:], o, h, lo, c, v, correction_mark)


class HistoryCache:
    """At most ``max_series`` entries; the least recently used one goes first."""

    def __init__(self, *, max_series: int = 4096) -> None:
        if max_series < 0:
            raise ValueError(f"max_series must be >= 0, got {max_series}")
        self.max_series = max_series
        self._entries: OrderedDict[tuple[str, str], History] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, series: tuple[str, str]) -> History | None:
        """The series' entry, if kept."""
        entry = self._entries.get(series)
        if entry is not None:
            self._entries.move_to_end(series)
        return entry

    def put(self, series: tuple[str, str], entry: History) -> None:
        """Keep ``entry`` (after the batch that made it committed)."""
        if self.max_series == 0:
            return
        self._entries[series] = entry
        self._entries.move_to_end(series)
        while len(self._entries) > self.max_series:
            self._entries.popitem(last=False)

    def drop(self, series: tuple[str, str]) -> None:
        """Forget the series (stale)."""
        self._entries.pop(series, None)
