"""Browser-test fixtures: headless Chromium (Debian's, no download) and a key helper."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

ARTIFACTS = Path(__file__).resolve().parents[4] / "test-artifacts" / "labeling"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# The Chromium on PATH (Debian's package: no download); without one, Playwright's own.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def timings(page: Page) -> list[dict[str, Any]]:
    """The page's action timings (``window.hindsightTimings``)."""
    result: list[dict[str, Any]] = await page.evaluate("window.hindsightTimings")
    return result


async def press(page: Page, key: str) -> None:
    """Press a key and wait until the page finished the action it started."""
    before = len(await timings(page))
    await page.keyboard.press(key)
    await page.wait_for_function(f"window.hindsightTimings.length > {before}", timeout=10_000)


@pytest_asyncio.fixture
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed after the test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture
def keys() -> Callable[[Page, str], Awaitable[None]]:
    """:func:`press`, for tests (importlib mode: test modules cannot import each other)."""
    return press


@pytest_asyncio.fixture
def artifacts() -> Path:
    """Where browser tests keep screenshots (``test-artifacts/labeling/``)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
