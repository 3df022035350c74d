"""Debian's Chromium driven by Playwright, for tests and benchmarks: never a
downloaded browser, no sandbox (tests run as root in CI), no background network."""

from __future__ import annotations

import ctypes.util
from pathlib import Path
from typing import Any

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
