"""The demo page's browser: Debian's headless Chromium driven by Playwright (browser
downloads are not reachable here), and where screenshots go."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.harness.environment import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUT = Path(os.environ.get("CHAINPULSE_TEST_OUTPUT", ROOT / ".test-output"))
WAIT_MS = 20_000  # what a page assertion waits for


@contextlib.contextmanager
def chromium_tab() -> Iterator[Page]:
    """A 1280 x 900 tab; an error the page's scripts raise fails the test at the end."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (make test installs it from the Debian packages)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            tab.on("pageerror", lambda exc: errors.append(str(exc)))
            yield tab
            assert errors == [], errors
        finally:
            browser.close()


def screenshot(tab: Page, name: str) -> Path:
    """Keep a full-page screenshot of `tab` in OUTPUT as `name`; its path."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / name
    tab.screenshot(path=str(path), full_page=True)
    return path
