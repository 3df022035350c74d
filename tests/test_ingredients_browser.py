"""The made-from page in a real browser (Debian's Chromium, Playwright, a phone's
viewport): a salad whose kale was too warm says so in its headline with the path, and
the kale's journey (its farm, its leg, its chart) opens under "What it was made from".
Saves a screenshot to `.artifacts/screenshots/`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import browser as chromium
from support.ingredients import SALAD, make_salad

from provenance.core import gs1
from provenance.web import create_app
from provenance.web.background import serving

ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "screenshots"

pytestmark = [pytest.mark.external, pytest.mark.slow]


@pytest.fixture
def server(file_world):
    make_salad(file_world)
    app = create_app(
        {
            "DATABASE": str(file_world.store.path),
            "CLOCK": lambda: file_world.now,
            "LOG_PUBLIC_KEY": file_world.log_public_key,
        }
    )
    with serving(app) as base_url:
        yield base_url


def test_the_made_from_page_shows_the_ingredients_journey(browser, server, tmp_path):
    context = browser.new_context(viewport=chromium.PHONE, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))

    def only_loopback(route):
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    try:
        page.goto(server + SALAD.removeprefix(gs1.DEFAULT_BASE), wait_until="load")
        status = page.locator("#status")
        assert page.locator("#status .status-word").inner_text() == "Cold-chain excursion"
        assert "The Kale in this product was too warm for 3 h 15 min." in status.inner_text()

        kale = page.locator("#ingredients details.ingredient").first
        assert kale.get_attribute("open") is not None, "a troubled ingredient is open"
        kale.scroll_into_view_if_needed()
        text = " ".join(kale.inner_text().split())
        assert "Kale" in text and "Produced by farm" in text
        assert "Outside 0–5 °C for 3 h 15 min in all over its journey." in text
        chart = kale.locator("svg.chart").first
        chart.scroll_into_view_if_needed()
        assert chart.is_visible()
        assert kale.locator("svg.chart .excursion").count() > 0

        chard = page.locator("#ingredients details.ingredient").nth(1)
        assert chard.get_attribute("open") is None, "a fine ingredient stays collapsed"
        chard.locator("summary").click()
        assert "Hill Farm" in chard.inner_text()

        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= chromium.PHONE["width"], "no sideways scrolling on a phone"
        assert not problems, problems
        assert not elsewhere, elsewhere

        shot = tmp_path / "scan-made-from-390x844.png"
        page.screenshot(path=str(shot), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
    finally:
        context.close()
