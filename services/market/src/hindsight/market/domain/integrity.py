"""The data-integrity gate every bar passes before it is stored, and the gap report.

``check_bar`` returns every rule a bar breaks as a ``Violation`` naming the field (an empty
list means the bar is acceptable); the service sends a bar with any violation to the DLQ
with those reasons and never stores it. The rules:

- ``timeframe``: one of ``bars.TIMEFRAMES``.
- ``symbol``: not empty.
- ``open``/``high``/``low``/``close``/``volume``: finite numbers (no NaN, no infinity).
- ``high``: ``low <= high``. When that holds, ``open`` and ``close`` must each lie in
  ``[low, high]`` (a violation names the one outside). When it does not, only ``high`` is
  reported: the range itself is wrong, so "open outside it" would say nothing more.
- ``volume``: ``>= 0``.
- ``ts``: tz-aware UTC (offset zero) and aligned to the timeframe: ``ts - align_offset`` is a
  whole multiple of the timeframe counted from the Unix epoch (00:00 UTC), so 1h bars open on
  the hour, 4h bars at 00, 04, 08 … UTC and 1d bars at 00:00 UTC; ``1mo`` bars open on the
  first of a month at 00:00 UTC. Series whose bars open on another grid (hourly equity bars
  at :30) pass their offset as ``align_offset``.
- ``ts`` again: strictly after ``previous.ts`` when ``previous`` (the series' latest stored
  bar) belongs to the same series (symbol and timeframe); a ``previous`` of another series is
  not compared. Replacing a stored bar by a corrected one is the caller's decision: it passes
  the bar stored before that time as ``previous``.

``find_gaps`` reports the bars a series' calendar expected but the series lacks, between two
present bars (never before the first or after the last). Gaps are reported, never filled: no
bar is invented. ``1mo`` bars are expected every month in every calendar (a month always has
trading days): a missing month is a gap, a month's length (28 to 31 days) is not. The
calendars (``calendar_for`` picks one per symbol):

- ``"24x7"`` (crypto): every bar is expected.
- ``"fx"``: closed from Friday 22:00 to Sunday 22:00 UTC; an intraday bar is expected when it
  overlaps open time; a 1d bar is expected Monday to Friday.
- ``"equity_us"``: Monday to Friday; an intraday bar is expected when it overlaps the regular
  session 14:30–21:00 UTC (US Eastern standard time; during daylight saving time the session
  is an hour earlier, so the first summer hour shows up as a gap and the 13:30 bar is
  simply extra); a 1d bar is expected on every weekday. Exchange holidays are not modelled:
  they are reported as gaps.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hindsight.market.domain.bars import TIMEFRAMES, Bar, Timeframe, timeframe_of

__all__ = [
    "CALENDARS",
    "Gap",
    "Violation",
    "calendar_for",
    "check_bar",
    "find_gaps",
]

CALENDARS: tuple[str, ...] = ("24x7", "fx", "equity_us")
_DAY = timedelta(days=1)
# FX: closed from Friday 22:00 to Sunday 22:00 UTC, in minutes since Monday 00:00.
_FX_CLOSED = (4 * 1440 + 22 * 60, 6 * 1440 + 22 * 60)
# US equities: regular session 14:30–21:00 UTC, in minutes since midnight.
_EQUITY_SESSION = (14 * 60 + 30, 21 * 60)


@dataclass(frozen=True)
class Violation:
    """One broken rule: the bar's field and why."""

    field: str
    reason: str


@dataclass(frozen=True)
class Gap:
    """Bars the calendar expected between two present bars: ``after`` and ``before`` are the
    open times of the present bars on either side, ``missing`` the number of bars expected
    strictly between them."""

    after: datetime
    before: datetime
    missing: int


def check_bar(
    bar: Bar, *, previous: Bar | None, align_offset: timedelta = timedelta(0)
) -> list[Violation]:
    """Every integrity rule ``bar`` breaks (empty when it is acceptable); see the module."""
    found: list[Violation] = []
    tf = TIMEFRAMES.get(bar.timeframe)
    if tf is None:
        known = ", ".join(TIMEFRAMES)
        found.append(Violation("timeframe", f"{bar.timeframe!r} is not one of {known}"))
    if not bar.symbol:
        found.append(Violation("symbol", "must not be empty"))
    finite = True
    for name in ("open", "high", "low", "close", "volume"):
        value = getattr(bar, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.append(Violation(name, f"must be a number, got {type(value).__name__}"))
            finite = False
        elif not math.isfinite(value):
            found.append(Violation(name, f"must be finite, got {value!r}"))
            finite = False
    if finite:
        if bar.high < bar.low:
            found.append(Violation("high", f"high {bar.high!r} < low {bar.low!r}"))
        else:
            for name in ("open", "close"):
                value = getattr(bar, name)
                if not bar.low <= value <= bar.high:
                    found.append(
                        Violation(
                            name, f"{name} {value!r} outside [low {bar.low!r}, high {bar.high!r}]"
                        )
                    )
        if bar.volume < 0:
            found.append(Violation("volume", f"must be >= 0, got {bar.volume!r}"))
    found.extend(_check_ts(bar, tf, previous, align_offset))
    return found


def _check_ts(
    bar: Bar, tf: Timeframe | None, previous: Bar | None, align_offset: timedelta
) -> list[Violation]:
    offset = bar.ts.utcoffset()
    if offset is None:
        return [Violation("ts", f"must be timezone-aware UTC, got naive {bar.ts.isoformat()}")]
    if offset != timedelta(0):
        return [Violation("ts", f"must be UTC, got offset {offset} in {bar.ts.isoformat()}")]
    found: list[Violation] = []
    if tf is not None and not tf.is_aligned(bar.ts, offset=align_offset):
        found.append(
            Violation("ts", f"{bar.ts.isoformat()} is not aligned to the {bar.timeframe} grid")
        )
    same_series = (
        previous is not None
        and previous.symbol == bar.symbol
        and previous.timeframe == bar.timeframe
    )
    if previous is not None and same_series and bar.ts <= previous.ts:
        found.append(
            Violation(
                "ts",
                f"{bar.ts.isoformat()} is not after the series' previous bar "
                f"{previous.ts.isoformat()}",
            )
        )
    return found


def find_gaps(ts_sorted: Sequence[datetime], timeframe: str, *, calendar: str) -> list[Gap]:
    """The gaps of one series (open times sorted ascending) against ``calendar``."""
    tf = timeframe_of(timeframe)
    if calendar not in CALENDARS:
        raise ValueError(f"calendar {calendar!r} is not one of {', '.join(CALENDARS)}")
    gaps: list[Gap] = []
    for a, b in zip(ts_sorted, ts_sorted[1:], strict=False):
        if b <= a:
            raise ValueError(
                f"ts_sorted must be strictly increasing: {b.isoformat()} follows {a.isoformat()}"
            )
        if tf.is_calendar:
            missing = len(tf.opens_between(a, b))  # every month is expected
        elif b - a == tf.nominal:
            continue
        elif calendar == "24x7":
            missing = math.ceil((b - a) / tf.nominal) - 1
        else:
            missing = sum(_expected(t, tf.nominal, calendar) for t in tf.opens_between(a, b))
        if missing:
            gaps.append(Gap(after=a, before=b, missing=missing))
    return gaps


def _expected(ts: datetime, delta: timedelta, calendar: str) -> bool:
    """Whether ``calendar`` expects a bar opening at ``ts`` (``calendar`` is not 24x7)."""
    weekday = ts.weekday()
    if delta >= _DAY:
        return weekday < 5
    minutes = delta // timedelta(minutes=1)
    if calendar == "fx":
        start = weekday * 1440 + ts.hour * 60 + ts.minute
        closed_from, closed_to = _FX_CLOSED
        return not (start >= closed_from and start + minutes <= closed_to)
    if weekday >= 5:
        return False
    start = ts.hour * 60 + ts.minute
    session_open, session_close = _EQUITY_SESSION
    return start < session_close and start + minutes > session_open


_FIAT = frozenset(
    "USD EUR JPY GBP CHF AUD NZD CAD SEK NOK DKK PLN HUF CZK TRY ZAR MXN SGD HKD CNH CNY "
    "INR KRW ILS THB XAU XAG XPT XPD".split()
)
_CRYPTO = frozenset(
    "BTC XBT ETH SOL XRP ADA DOGE DOT LTC BCH BNB AVAX LINK MATIC TRX ATOM XLM ETC UNI SHIB "
    "TON NEAR APT ARB OP SUI PEPE FIL XMR AAVE".split()
)
_STABLES = ("USDT", "USDC", "BUSD", "FDUSD", "TUSD", "DAI")
_SEPARATORS = re.compile(r"[/\-_:.\s]")


def calendar_for(symbol: str, *, overrides: Mapping[str, str] | None = None) -> str:
    """The trading calendar of ``symbol``: ``overrides[symbol]`` when given, else a heuristic.

    The heuristic, on the upper-cased symbol without separators (``/ - _ : .``) and without
    a perpetual suffix (``PERP``): crypto (``"24x7"``) when it ends in a stablecoin (USDT,
    USDC, BUSD, FDUSD, TUSD, DAI), or is a known crypto base (BTC, XBT, ETH, SOL, …)
    followed by a fiat or crypto quote (BTCUSD, ETHBTC, SOLEUR), or is BTC, XBT or ETH
    alone (other bases alone, such as NEAR or OP, are also stock tickers); ``"fx"`` when it
    is six letters made of two known fiat or metal codes (EURUSD, USDJPY, XAUUSD);
    otherwise ``"equity_us"`` (GOOG, SPY). Anything else (a crypto base the list does not
    know, a non-US stock) needs an override; the service's settings hold them.
    """
    if overrides is not None and symbol in overrides:
        calendar = overrides[symbol]
        if calendar not in CALENDARS:
            raise ValueError(
                f"calendar override for {symbol!r}: {calendar!r} is not one of "
                f"{', '.join(CALENDARS)}"
            )
        return calendar
    name = _SEPARATORS.sub("", symbol.upper()).removesuffix("PERP")
    if name.endswith(_STABLES) or _is_crypto_pair(name):
        return "24x7"
    if len(name) == 6 and name[:3] in _FIAT and name[3:] in _FIAT:
        return "fx"
    return "equity_us"


def _is_crypto_pair(name: str) -> bool:
    if name in ("BTC", "XBT", "ETH"):
        return True
    quotes = _FIAT | _CRYPTO
    return any(name.startswith(base) and name[len(base) :] in quotes for base in _CRYPTO)
