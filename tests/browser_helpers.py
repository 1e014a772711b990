"""Debian's chromium driven by Playwright, for the dashboard's tests: ``page()`` yields a
page and the console errors it logs (page errors included), and fails the test clearly
when the dashboard bundle or chromium is missing (`make dashboard`, `make deps-chromium`)
instead of skipping it. Playwright's own browser download is never used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from changeover.api import dashboard

CHROMIUM = "/usr/bin/chromium"


@contextmanager
def page(*, width: int = 1280, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    if not dashboard.built():
        pytest.fail(
            f"the dashboard bundle is missing from {dashboard.ASSETS}: run `make dashboard`"
        )
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `make deps-chromium` (Debian package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            opened = browser.new_page(viewport={"width": width, "height": height})
            opened.set_default_timeout(60_000)
            errors: list[str] = []
            opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            opened.on("pageerror", lambda exc: errors.append(str(exc)))
            yield opened, errors
        finally:
            browser.close()
