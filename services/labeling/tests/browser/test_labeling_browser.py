"""Headless Chromium: log in, label 20 trades by keyboard, bulk label 5, undo 1.

Then the label files, the table rows and the label.saved events read back from
JetStream must match exactly. Screenshots of the grid and the review view are kept in
``test-artifacts/labeling/``. Speed is printed (labels/minute, p95 of page actions), not
asserted: timings on a shared 2-core machine are not a test.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from hindsight.labeling.service import UNDO_COMMENT

pytestmark = pytest.mark.browser

PASSWORD = "browser-password"
N_TRADES = 32
KEYS = "yynryynnyrynyyny yny".replace(" ", "y")  # 20 label keys, a mix of Y/N/R
EXPECTED = {"y": "approved", "n": "rejected", "r": "review"}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


async def _timings(page: Page) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = await page.evaluate("window.hindsightTimings")
    return result


async def test_keyboard_labeling_end_to_end(
    harness: Any,
    chromium: Browser,
    keys: Callable[[Page, str], Awaitable[None]],
    artifacts: Path,
) -> None:
    _press, ARTIFACTS, browser = keys, artifacts, chromium
    trades = [
        await harness.add_trade(i, suggestion=("approved", "rejected", "review")[i % 3])
        for i in range(1, N_TRADES + 1)
    ]
    await harness.wait_items(N_TRADES)
    await harness.add_labeler("alice", PASSWORD)

    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids.
    context = await browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{harness.base_url}/")
    assert page.url.endswith("/login")
    await page.screenshot(path=str(ARTIFACTS / "login.png"))
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.locator("#grid .card").count() == N_TRADES
    lazy = await page.eval_on_selector_all(
        "#grid img", "imgs => imgs.filter(i => i.loading === 'lazy').length"
    )
    assert lazy == N_TRADES
    # Memory is down in this test: the "similar" button stays hidden.
    assert await page.locator("#similar-button").is_hidden()
    await page.wait_for_function(
        "Array.from(document.querySelectorAll('#grid img')).slice(0, 8)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    await page.screenshot(path=str(ARTIFACTS / "grid.png"))

    # Focused review view, keyboard only from here on.
    await _press(page, "Enter")
    await page.wait_for_function(
        "document.getElementById('chart').complete && "
        "document.getElementById('chart').naturalWidth > 0"
    )
    await _press(page, "t")  # annotated chart
    await page.wait_for_function(
        "document.getElementById('chart').src.endsWith('/annotated') && "
        "document.getElementById('chart').complete"
    )
    await page.screenshot(path=str(ARTIFACTS / "review.png"))
    await _press(page, "t")

    # A grade and a comment for the first trade, then 20 labels.
    await _press(page, "2")
    await page.keyboard.press("c")
    await page.wait_for_selector("#comment-box:not([hidden])")
    await page.keyboard.type("clean retest of the breakout level")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#comment-box", state="hidden")
    started = time.perf_counter()
    for key in KEYS:
        await _press(page, key)
    labeling_s = time.perf_counter() - started
    label_timings = [
        t["ms"] for t in (await _timings(page)) if t["action"] in ("approve", "reject", "review")
    ]
    # Previous then next, to check navigation without labeling.
    await _press(page, "k")
    await _press(page, "ArrowRight")

    # Bulk: back to the grid, select 5 with X / space, reject them all with N.
    await _press(page, "Escape")
    for i, key in enumerate(("x", "j", " ", "j", "x", "j", "x", "j", "x")):
        await _press(page, key)
        del i
    assert await page.locator("#grid .card.selected").count() == 5
    assert await page.inner_text("#selection-count") == "5"
    await page.screenshot(path=str(ARTIFACTS / "bulk-selection.png"))
    await _press(page, "n")  # asks first: how many change
    assert await page.inner_text("#bulk-summary") == "5 trades will change."
    await _press(page, "Enter")
    assert await page.locator("#grid .card.selected").count() == 0
    # Undo the last label (the fifth of the bulk: unlabeled before → review).
    await _press(page, "u")
    await page.wait_for_selector("#toast:not([hidden])")
    await page.screenshot(path=str(ARTIFACTS / "grid-after.png"))
    all_timings = [t["ms"] for t in await _timings(page)]
    counter = await page.inner_text("#progress")
    assert errors == []
    # The page itself works under its CSP (no inline script or style is blocked).
    strict = await browser.new_context(viewport={"width": 1440, "height": 900})
    await strict.add_cookies(await context.cookies())
    strict_page = await strict.new_page()
    violations: list[str] = []
    strict_page.on(
        "console",
        lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    await strict_page.goto(f"{harness.base_url}/?focus={trades[0]}")
    await strict_page.wait_for_selector("body[data-ready='1']")
    await strict_page.wait_for_selector("#review:not([hidden])")
    assert violations == []

    labeled_by_key = trades[:20]
    bulk = trades[20:25]
    expected = {t: EXPECTED[k] for t, k in zip(labeled_by_key, KEYS, strict=True)}
    expected.update(dict.fromkeys(bulk[:4], "rejected"))
    expected[bulk[4]] = "review"

    files = harness.label_files()
    rows = await harness.label_rows()
    events = await harness.label_events(expect=26)
    assert len(events) == 26  # 20 by key + 5 bulk + 1 undo
    assert {t: f["label"] for t, f in files.items()} == expected
    assert {t: r["label"] for t, r in rows.items()} == expected
    latest: dict[str, dict[str, Any]] = {}
    for event in events:
        latest[event["trade_id"]] = event
    assert set(latest) == set(expected)
    for trade, file in files.items():
        row, event = rows[trade], latest[trade]
        for key in (
            "label",
            "labeler_id",
            "quality_grade",
            "user_comment",
            "llm_agreed",
            "screenshot",
            "chroma_vector_id",
        ):
            assert file[key] == row[key] == event.get(key), (trade, key)
        assert file["timestamp"] == event["occurred_at"]
        assert row["occurred_at"].isoformat().replace("+00:00", "Z") == file["timestamp"]
        assert file["labeler_id"] == "alice"
    assert files[trades[0]]["quality_grade"] == "B"
    assert files[trades[0]]["user_comment"] == "clean retest of the breakout level"
    assert files[bulk[4]]["user_comment"] == UNDO_COMMENT
    labeled_count = sum(1 for v in expected.values() if v != "review")
    assert f"{labeled_count} / {N_TRADES}" in counter.replace("\n", " ")

    per_minute = len(KEYS) / labeling_s * 60
    print(
        f"\nlabeling speed: {len(KEYS)} labels in {labeling_s:.2f} s = "
        f"{per_minute:.0f} labels/min; "
        f"label actions p95 {_p95(label_timings):.1f} ms (median "
        f"{statistics.median(label_timings):.1f}); all page actions p95 "
        f"{_p95(all_timings):.1f} ms over {len(all_timings)} actions"
    )
    (ARTIFACTS / "timings.txt").write_text(
        f"labels_per_minute {per_minute:.1f}\nlabel_action_p95_ms {_p95(label_timings):.1f}\n"
        f"page_action_p95_ms {_p95(all_timings):.1f}\nactions {len(all_timings)}\n"
    )
