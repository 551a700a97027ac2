"""json.created payload → readable text."""

from __future__ import annotations

import pytest

from hindsight.embedder.domain.text import render_document

pytestmark = pytest.mark.unit

TRADE = {
    "trade_id": "t-7",
    "symbol": "EURUSD",
    "timeframe": "1h",
    "side": "buy",
    "entry": 1.1,
    "sl": 1.095,
    "tp": 1.11,
    "atr": 0.004,
    "result": None,
    "setup": "breakout",
}


def test_key_fields_come_first_then_the_rest_in_payload_order() -> None:
    text = render_document("trade_meta", TRADE, ["setup", "side", "missing"])
    lines = text.splitlines()
    assert lines[0] == "trade_meta"
    assert lines[1:3] == ["setup: breakout", "side: buy"]
    keys = [line.split(":")[0] for line in lines[3:]]
    assert keys == ["trade_id", "symbol", "timeframe", "entry", "sl", "tp", "atr", "result"]


def test_prices_are_relative_to_entry_in_atr_units() -> None:
    lines = render_document("trade_meta", TRADE).splitlines()
    assert "sl: -1.25 ATR (-0.45% from entry)" in lines
    assert "tp: +2.50 ATR (+0.91% from entry)" in lines
    assert "atr: 0.36% of entry" in lines
    assert "result: n/a" in lines


def test_setups_on_different_instruments_read_alike() -> None:
    gold = {**TRADE, "symbol": "XAUUSD", "entry": 2000.0, "sl": 1990.9, "tp": 2018.2, "atr": 7.28}
    strip = {"symbol", "entry", "atr"}
    eur = [ln for ln in render_document("t", TRADE).splitlines() if ln.split(":")[0] not in strip]
    xau = [ln for ln in render_document("t", gold).splitlines() if ln.split(":")[0] not in strip]
    assert eur == xau


def test_without_atr_prices_are_percent_from_entry() -> None:
    text = render_document("signal", {"entry_price": 200.0, "stop_loss": 190.0, "zone_high": 210})
    assert "stop_loss: -5.00% from entry" in text
    assert "zone_high: +5.00% from entry" in text
    assert "entry_price: 200" in text


def test_without_entry_prices_stay_absolute_and_nested_values_are_flattened() -> None:
    text = render_document(
        "zone", {"zone_low": 1.2, "meta": {"tags": ["a", "b"], "ok": True}, "note": "two\nlines"}
    )
    assert text.splitlines()[1:] == [
        "zone_low: 1.2",
        "meta.tags: a, b",
        "meta.ok: true",
        "note: two lines",
    ]
