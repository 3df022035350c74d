"""tools/screenshots.py in its fast mode: two screens, one size, one language,
into a tmp dir — the ledger it builds, the app it serves on loopback and the
browser it drives all work, and what comes out are small palette PNGs of the
size asked for. It starts Debian's Chromium, hence `external`."""

from __future__ import annotations

import ctypes.util
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.external


@pytest.fixture(scope="module")
def screenshots():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (./run tests installs it as root)")
    if ctypes.util.find_library("atomic") is None:
        pytest.skip("libatomic1, which Playwright's driver needs, is not installed")
    pytest.importorskip("playwright.sync_api")
    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "tools" / "screenshots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["screenshots"] = module  # its dataclass looks itself up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["screenshots"]


def test_two_screens_come_out_as_small_pngs(screenshots, tmp_path, capsys):
    from PIL import Image

    only = "scan-recalled,portal-recall-report"
    args = ["--out", str(tmp_path), "--only", only, "--size", "phone", "--lang", "zh"]
    assert screenshots.main(args) == 0
    made = sorted(p.name for p in tmp_path.glob("*.png"))
    assert made == ["portal-recall-report-phone-zh.png", "scan-recalled-phone-zh.png"]
    for name in made:
        path = tmp_path / name
        assert path.stat().st_size < 300_000
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "P"  # a palette PNG
            assert image.width == 390 and 844 <= image.height <= screenshots.MAX_HEIGHT
    assert "2 screenshots" in capsys.readouterr().out


def test_an_unknown_screen_is_an_error(screenshots, tmp_path, capsys):
    assert screenshots.main(["--out", str(tmp_path), "--only", "nope"]) == 2
    assert "Error: no screen nope" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.png"))


def test_the_committed_set_is_complete_and_small(screenshots):
    folder = ROOT / "docs" / "screenshots"
    expected = {
        f"{screen.name}-{size}-{lang}.png"
        for screen in screenshots.SCREENS
        for size in screenshots.SIZES
        for lang in screenshots.LANGS
    }
    assert {p.name for p in folder.glob("*.png")} == expected
    assert sum(p.stat().st_size for p in folder.glob("*.png")) < 4_000_000
    index = (folder / "README.md").read_text()
    assert all(f"`{screen.name}`" in index for screen in screenshots.SCREENS)
