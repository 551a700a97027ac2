"""Headless Chromium, issue 13: pages, the selection bar and bulk confirmation, the toast.

Screenshots go to ``test-artifacts/labeling/`` (bulk-bar.png, bulk-confirm.png,
toast-review.png, toast-narrow.png, page-2.png).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

pytestmark = pytest.mark.browser

PASSWORD = "browser-password"

_OVERLAPS = """() => {
  const t = document.getElementById('toast').getBoundingClientRect();
  const hit = (b) => !(b.right <= t.left || b.left >= t.right ||
                       b.bottom <= t.top || b.top >= t.bottom);
  return Array.from(document.querySelectorAll('.act, .chart-tabs .tab'))
    .filter((e) => e.offsetParent !== null)
    .filter((e) => hit(e.getBoundingClientRect()))
    .map((e) => e.textContent.trim());
}"""


async def _comment_toast(page: Page, text: str) -> None:
    await page.keyboard.press("c")
    await page.wait_for_selector("#comment-box:not([hidden])")
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#toast:not([hidden])")


async def test_pages_selection_bar_bulk_confirmation_and_toast(
    labeling_factory: Callable[..., Awaitable[Any]],
    chromium: Browser,
    keys: Callable[[Page, str], Awaitable[None]],
    artifacts: Path,
) -> None:
    _press, ARTIFACTS = keys, artifacts
    harness = await labeling_factory(page_size=5)
    trades = [await harness.add_trade(i, suggestion="approved") for i in range(1, 13)]
    await harness.wait_items(len(trades))
    await harness.add_labeler("alice", PASSWORD)

    context = await chromium.new_context(viewport={"width": 1280, "height": 720}, bypass_csp=True)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{harness.base_url}/login")
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_selector("body[data-ready='1']")

    # Pages: 5 of 12 shown, "]" opens the next page, "[" the previous one.
    assert await page.locator("#grid .card").count() == 5
    assert await page.inner_text("#page-pos") == "1–5 of 12"
    assert await page.locator("#pager").is_visible()
    await page.keyboard.press("]")
    await page.wait_for_url("**after=*")
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.inner_text("#page-pos") == "6–10 of 12"
    cards = await page.locator("#grid .card .tid").all_inner_texts()
    assert cards == trades[5:10]
    await page.screenshot(path=str(ARTIFACTS / "page-2.png"))
    await page.keyboard.press("[")
    await page.wait_for_url("**before=*")
    await page.wait_for_selector("body[data-ready='1']")
    assert await page.inner_text("#page-pos") == "1–5 of 12"

    # One trade already rejected, then 3 selected: the bar lists them.
    await _press(page, "n")  # trades[0] rejected, focus moves to trades[1]
    await _press(page, "k")
    for key in ("x", "j", "x", "j", "x"):
        await _press(page, key)
    bar = page.locator("#selection-bar")
    assert await bar.is_visible()
    assert await page.inner_text("#selection-count") == "3"
    listed = await page.inner_text("#selection-list")
    assert all(t in listed for t in trades[:3]), listed
    await page.screenshot(path=str(ARTIFACTS / "bulk-bar.png"))

    # A bulk label asks first and says how many change; Esc changes nothing.
    await _press(page, "n")
    assert await page.locator("#bulk-confirm").is_visible()
    summary = await page.inner_text("#bulk-summary")
    assert summary == "2 trades will change; 1 already rejected stays as it is."
    assert await page.inner_text("#bulk-ok-text") == "Label 2"
    await page.screenshot(path=str(ARTIFACTS / "bulk-confirm.png"))
    await _press(page, "Escape")
    assert await page.locator("#bulk-confirm").is_hidden()
    assert set(await harness.label_rows()) == {trades[0]}
    assert await page.inner_text("#selection-count") == "3"  # still selected
    await _press(page, "n")
    await _press(page, "Enter")
    assert await page.locator("#selection-bar").is_hidden()
    rows = await harness.label_rows()
    assert {t: r["label"] for t, r in rows.items()} == dict.fromkeys(trades[:3], "rejected")
    events = await harness.label_events(expect=3)
    assert len(events) == 3  # the one already rejected was not saved again

    # The toast in the review view covers no button, goes away by itself, and
    # its × dismisses it.
    await _press(page, "Enter")
    await _comment_toast(page, "kept for later")
    assert await page.evaluate(_OVERLAPS) == []
    await page.screenshot(path=str(ARTIFACTS / "toast-review.png"))
    await page.wait_for_selector("#toast", state="hidden", timeout=15_000)
    await _comment_toast(page, "again")
    await page.click("#toast-close")
    assert await page.locator("#toast").is_hidden()
    # Narrow window: one column, buttons under the chart; still not covered.
    await page.set_viewport_size({"width": 800, "height": 900})
    await page.locator(".actions").scroll_into_view_if_needed()
    await _comment_toast(page, "narrow")
    assert await page.evaluate(_OVERLAPS) == []
    await page.screenshot(path=str(ARTIFACTS / "toast-narrow.png"))
    assert errors == []
