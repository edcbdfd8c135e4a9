"""Debian's Chromium driven by Playwright (which downloads no browser), for the browser tests."""

from __future__ import annotations

import pytest

from tests.support.tools import require_tool

CHROMIUM = "/usr/bin/chromium"
# Headless as root, and none of Chromium's own network traffic (this machine's network is closed).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    require_tool(CHROMIUM, "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
