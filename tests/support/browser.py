"""Debian's Chromium driven by Playwright, for tests and benchmarks: never a
downloaded browser, no sandbox (tests run as root in CI), no background network."""

from __future__ import annotations

import ctypes.util
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
PHONE = {"width": 390, "height": 844}
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]


def missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if not CHROMIUM.exists():
        return "Debian chromium is not installed (./run tests installs it as root)"
    if ctypes.util.find_library("atomic") is None:
        return "libatomic1, which Playwright's driver needs, is not installed"
    return None


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=LAUNCH_ARGS, timeout=30_000
    )


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium for a test module; skipped, saying why, where it cannot
    run (a test module may define its own, as tests/test_browser.py does)."""
    why = missing()
    if why:
        pytest.skip(why)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        launched = launch(driver)
        yield launched
        launched.close()
