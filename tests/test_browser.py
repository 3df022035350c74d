"""The consumer page in a real browser: Debian's Chromium driven by Playwright
at a phone's viewport (390×844), served by waitress on a loopback port.

The lot has a recall, a cold-chain excursion and a sensor gap; the test checks
what a person sees first, that the chart marks the excursion and the gap, that
nothing is fetched from anywhere but our server, and saves a screenshot to
`.artifacts/screenshots/` (and the test's tmp dir).
"""

from __future__ import annotations

import ctypes.util
import shutil
from pathlib import Path

import pytest
from support.world import LOT, at

from provenance.core import gs1
from provenance.web import create_app
from provenance.web.background import serving

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (./run tests installs it as root)")
    if ctypes.util.find_library("atomic") is None:
        pytest.skip(
            "libatomic1, which Playwright's driver needs, is not installed (./run tests "
            "installs it as root)"
        )
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        timeout=30_000,
    )
    yield browser
    browser.close()


@pytest.fixture
def troubled_lot(file_world):
    """LOT42: an excursion at the farm, a silent logger in transit, then a recall."""
    world = file_world
    hours = [1 + k / 4 for k in range(4 * 20)]  # 1 h … 21 h, every 15 min
    temperature = {h: (11.0 if 6 <= h < 10 else 3.0) for h in hours}  # 4 h at 11 °C
    world.ledger.append([world.reading(h, temperature[h]) for h in hours if not 14 <= h < 19])
    world.ship_and_receive("farm", "carrier", [LOT], 12)
    world.ok("carrier", "detach", [LOT], {"device": world.did("probe")}, time=at(22))
    recall = {"reason": "Listeria found in routine testing", "class": "I"}
    world.ok("regulator", "recall", [LOT], recall, time=at(30))
    return world


@pytest.fixture
def server(troubled_lot):
    app = create_app(
        {
            "DATABASE": str(troubled_lot.store.path),
            "CLOCK": lambda: troubled_lot.now,
            "LOG_PUBLIC_KEY": troubled_lot.log_public_key,
        }
    )
    with serving(app) as base_url:
        yield base_url


def open_page(browser, url: str, **options):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    def only_loopback(route):
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(url, wait_until="load")
    return context, page, problems, elsewhere


def test_recalled_lot_on_a_phone(browser, server, tmp_path):
    url = server + LOT.removeprefix(gs1.DEFAULT_BASE)
    context, page, problems, elsewhere = open_page(browser, url)
    try:
        banner = page.locator("#status")
        box = banner.bounding_box()
        assert box is not None and box["y"] < 120, "the recall is the first thing on screen"
        assert box["y"] + box["height"] <= PHONE["height"], "the whole banner fits the first screen"
        assert page.locator("#status .status-word").inner_text().endswith("RECALLED")
        assert "Listeria found in routine testing" in banner.inner_text()
        colour = banner.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(176, 0, 32)", colour  # the red of a recall

        # Legs off screen are not laid out until scrolled to (content-visibility),
        # so read the section's text, then scroll each marked chart into view.
        coldchain = " ".join(page.locator("#coldchain").text_content().split())
        assert "too warm" in coldchain and "peak 11.0 °C" in coldchain
        assert "No readings for" in coldchain
        assert "Beyond what this product tolerates." in coldchain
        for mark in ("svg.chart .excursion", "svg.chart .gap"):
            first = page.locator(mark).first
            first.scroll_into_view_if_needed()
            assert first.is_visible(), mark
        chart = page.locator("svg.chart").first.bounding_box()
        assert chart is not None and chart["width"] <= PHONE["width"]

        steps = page.locator("#journey li").all_inner_texts()
        assert any("Shipped by farm to carrier" in s for s in steps)
        assert all("signed by" in s for s in steps)
        assert "✓ Chain of records intact" in page.locator("#integrity").inner_text()

        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], "no sideways scrolling on a phone"
        assert not problems, problems  # no CSP violations, no script errors
        assert not elsewhere, elsewhere  # no third-party requests

        shot = tmp_path / "scan-recalled-390x844.png"
        page.screenshot(path=str(shot), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
        assert shot.stat().st_size > 10_000
    finally:
        context.close()


def test_large_text_and_language_switch_work_as_plain_links(browser, server):
    url = server + LOT.removeprefix(gs1.DEFAULT_BASE)
    context, page, problems, _ = open_page(browser, url, java_script_enabled=False)
    try:
        assert page.locator("#read-aloud").is_hidden(), "no script: no read-aloud button"
        before = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
        page.get_by_role("link", name="Large text").click()
        page.wait_for_load_state("load")
        after = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
        assert after >= before * 1.25
        page.get_by_role("link", name="中文").click()
        page.wait_for_load_state("load")
        assert page.locator("#status .status-word").inner_text().endswith("已召回")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        assert not problems, problems
    finally:
        context.close()


def test_read_aloud_appears_where_the_browser_can_speak(browser, server):
    url = server + LOT.removeprefix(gs1.DEFAULT_BASE)
    context, page, problems, _ = open_page(browser, url)
    try:
        can_speak = page.evaluate("'speechSynthesis' in window")
        assert page.locator("#read-aloud").is_visible() == can_speak
        assert not problems, problems
    finally:
        context.close()
