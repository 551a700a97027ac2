"""Market data for the replay: EURUSD hourly and GOOG daily bars, or a seeded synthetic market."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

from .names import DATA_SETS

__all__ = ["DATA_SETS", "Bars", "load_bars", "synthetic_frame"]


FloatArray = npt.NDArray[np.float64]


_TIMEFRAMES = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}


@dataclass(frozen=True, eq=False)
class Bars:
    """OHLCV bars of one symbol, oldest first, with a UTC ``DatetimeIndex`` (bar open time)."""

    name: str
    """The data set name (``eurusd``, ``goog``, ``synthetic``)."""
    symbol: str
    timeframe: str
    """``1h`` or ``1d``."""
    frame: pd.DataFrame
    """Columns ``Open High Low Close Volume``."""

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def open(self) -> FloatArray:
        return np.asarray(self.frame["Open"], dtype=np.float64)

    @property
    def high(self) -> FloatArray:
        return np.asarray(self.frame["High"], dtype=np.float64)

    @property
    def low(self) -> FloatArray:
        return np.asarray(self.frame["Low"], dtype=np.float64)

    @property
    def close(self) -> FloatArray:
        return np.asarray(self.frame["Close"], dtype=np.float64)

    def time(self, index: int) -> datetime:
        """Bar ``index``'s open time as an aware UTC datetime."""
        value: datetime = self.frame.index[index].to_pydatetime()
        return value

    def close_time(self, index: int) -> datetime:
        """When bar ``index`` closed (its open time plus the timeframe): the first moment
        its close is known, so the earliest event time of anything computed from it."""
        return self.time(index) + _TIMEFRAMES[self.timeframe]

    def with_frame(self, frame: pd.DataFrame) -> Bars:
        """The same symbol with other bars (tests change the future with it)."""
        return Bars(name=self.name, symbol=self.symbol, timeframe=self.timeframe, frame=frame)


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[["Open", "High", "Low", "Close", "Volume"]].astype(np.float64).copy()
    index = pd.DatetimeIndex(out.index)
    out.index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return out


def synthetic_frame(n: int = 5000, *, seed: int = 7) -> pd.DataFrame:
    """Hourly OHLCV bars of a seeded random market with trending and ranging regimes."""
    rng = np.random.default_rng(seed)
    # Regimes of 50-300 bars, each with its own drift and volatility: breakouts and
    # pullbacks both happen, and nothing about the future is knowable from the past.
    drift = np.empty(n)
    vol = np.empty(n)
    i = 0
    while i < n:
        length = int(rng.integers(50, 300))
        drift[i : i + length] = rng.normal(0.0, 0.0004)
        vol[i : i + length] = rng.uniform(0.0008, 0.0025)
        i += length
    hours = np.arange(n) % 24
    session = 1.0 + 0.5 * np.exp(-(((hours - 14) / 3.0) ** 2))  # busier afternoons
    returns = drift + vol * session * rng.standard_t(5, size=n) / np.sqrt(5 / 3)
    close = 100.0 * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.0002, size=n))
    wick = vol * session * np.abs(rng.normal(0, 0.6, size=(2, n)))
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(1000 * session * np.exp(rng.normal(0, 0.3, size=n)))
    index = pd.date_range("2022-01-03", periods=n, freq="h", tz="UTC")
    return pd.DataFrame(
        {"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}, index=index
    )


def load_bars(name: str, *, seed: int = 7) -> Bars:
    """The bars of data set ``name`` (one of :data:`DATA_SETS`)."""
    if name == "eurusd":
        from backtesting.test import EURUSD  # type: ignore[import-untyped]

        return Bars(name=name, symbol="EURUSD", timeframe="1h", frame=_normalise(EURUSD))
    if name == "goog":
        from backtesting.test import GOOG

        return Bars(name=name, symbol="GOOG", timeframe="1d", frame=_normalise(GOOG))
    if name == "synthetic":
        return Bars(
            name=name, symbol="SYNTH", timeframe="1h", frame=_normalise(synthetic_frame(seed=seed))
        )
    raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(DATA_SETS)}")
