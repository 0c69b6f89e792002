"""Debian's chromium, headless, driven by Playwright through `executable_path` (never a
browser Playwright downloads): the pages are tested in the browser users have."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = shutil.which("chromium")


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    assert CHROMIUM, "the Debian package chromium is needed (.ci/run installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()
