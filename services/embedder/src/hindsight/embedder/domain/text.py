"""A ``json.created`` payload → the readable text that is embedded (and stored as document).

Key fields come first, then the other payload fields in their order. Prices are written
relative to the entry (percent, and ATR multiples when the payload has ``atr``), so two
setups on instruments with very different price levels read alike:
``sl: -1.2 ATR (-0.45% from entry)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = ["ENTRY_KEYS", "PRICE_KEYS", "render_document"]

ENTRY_KEYS: tuple[str, ...] = ("entry", "entry_price")
"""Payload keys holding the reference price, first found wins."""
PRICE_KEYS: frozenset[str] = frozenset(
    {
        "sl",
        "tp",
        "stop",
        "stop_loss",
        "take_profit",
        "target",
        "exit",
        "high",
        "low",
        "open",
        "close",
        "price",
        "level",
        "zone_low",
        "zone_high",
        "breakeven",
        "trailing_stop",
    }
)
"""Payload keys holding a price (besides any key ending in ``_price``)."""
_MAX_LIST_ITEMS = 20
_MAX_VALUE_CHARS = 2000


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _is_price(key: str) -> bool:
    return key in PRICE_KEYS or (key.endswith("_price") and key not in ENTRY_KEYS)


def _relative(value: float, entry: float, atr: float | None) -> str:
    pct = (value - entry) / entry * 100.0
    text = f"{pct:+.2f}% from entry"
    if atr is not None and atr > 0:
        return f"{(value - entry) / atr:+.2f} ATR ({text})"
    return text


def _scalar(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "true" if value else "false"
    number = _number(value)
    if number is not None:
        return _fmt(number)
    text = " ".join(str(value).split())
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _lines(key: str, value: Any, entry: float | None, atr: float | None) -> Iterator[str]:
    if isinstance(value, Mapping):
        for sub_key, sub_value in value.items():
            yield from _lines(f"{key}.{sub_key}", sub_value, entry, atr)
        return
    if isinstance(value, list | tuple):
        items = [_scalar(item) for item in value[:_MAX_LIST_ITEMS]]
        more = f" (+{len(value) - _MAX_LIST_ITEMS} more)" if len(value) > _MAX_LIST_ITEMS else ""
        yield f"{key}: {', '.join(items)}{more}"
        return
    number = _number(value)
    leaf = key.rsplit(".", 1)[-1]
    if number is not None and entry is not None and _is_price(leaf):
        yield f"{key}: {_relative(number, entry, atr)}"
    elif number is not None and entry is not None and leaf == "atr":
        yield f"{key}: {number / entry * 100.0:.2f}% of entry"
    else:
        yield f"{key}: {_scalar(value)}"


def render_document(
    doc_type: str, payload: Mapping[str, Any], key_fields: Sequence[str] | None = None
) -> str:
    """The readable text of a document: a ``doc_type`` line, then one ``key: value`` per line."""
    entry = next(
        (n for k in ENTRY_KEYS if (n := _number(payload.get(k))) is not None and n > 0), None
    )
    atr = _number(payload.get("atr"))
    first = [k for k in dict.fromkeys(key_fields or ()) if k in payload]
    rest = [k for k in payload if k not in first]
    lines = [doc_type]
    for key in (*first, *rest):
        lines.extend(_lines(key, payload[key], entry, atr))
    return "\n".join(lines)
