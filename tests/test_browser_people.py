"""The scan page for people, in Debian's Chromium (Playwright): times in the
viewer's own time zone, and read-aloud in the page's language only."""

from __future__ import annotations

import re

import pytest
from support import browser as chromium
from support.world import LOT

from provenance.core import gs1
from provenance.web import create_app
from provenance.web.background import serving

pytestmark = [pytest.mark.external, pytest.mark.slow]

PATH = LOT.removeprefix(gs1.DEFAULT_BASE)


def serve(world, **config):
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            **config,
        }
    )
    return serving(app)


@pytest.fixture
def lot(file_world):
    world = file_world
    world.ledger.append([world.reading(1 + k / 4, 3.0) for k in range(8)])
    world.ship_and_receive("farm", "carrier", [LOT], 3)
    return world


def times_on(page) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "main time[datetime]",
        "ts => ts.map(t => ({text: t.textContent, title: t.title, "
        "at: t.getAttribute('datetime')}))",
    )


def test_times_are_in_the_browsers_zone_with_utc_on_hover(browser, lot):
    """A phone in Shanghai opens a page the server wrote in UTC: the script
    shows every time in Shanghai's zone at once (no reload), the UTC time stays
    on hover, the footer names the zone; the next page comes from the server in
    that zone already."""
    with serve(lot) as base:
        context = browser.new_context(
            viewport=chromium.PHONE, timezone_id="Asia/Shanghai", locale="en-GB"
        )
        try:
            page = context.new_page()
            loads = []
            page.on("load", lambda _: loads.append(1))
            page.goto(base + PATH + "?lang=en", wait_until="load")
            page.wait_for_function(
                "document.querySelector('[data-zone-name]').textContent === 'Asia/Shanghai'"
            )
            times = times_on(page)
            assert times
            commission = next(t for t in times if t["at"].startswith("2026-09-21T14:13"))
            assert re.fullmatch(r"21 Sept? 2026, 22:13", commission["text"]), commission
            assert commission["title"] == "2026-09-21 14:13 UTC"
            for shown in times:  # every one 8 h ahead of its UTC title
                hour = int(shown["text"][-5:-3])
                assert hour == (int(shown["title"][11:13]) + 8) % 24, shown
            assert len(loads) == 1, "shown in the browser's zone without a reload"
            footer = page.locator("footer").inner_text()
            assert "Times are shown in Asia/Shanghai." in footer
            cookies = {c["name"]: c["value"] for c in context.cookies()}
            assert cookies.get("tz") == "Asia/Shanghai"
            again = context.request.get(base + PATH + "?lang=en").text()
            assert "21 Sep 2026, 22:13</time>" in again  # the server now writes it so
        finally:
            context.close()


def test_without_javascript_the_configured_default_zone(browser, lot):
    with serve(lot, DEFAULT_TZ="Asia/Shanghai") as base:
        context = browser.new_context(
            viewport=chromium.PHONE, timezone_id="Europe/Berlin", java_script_enabled=False
        )
        try:
            page = context.new_page()
            page.goto(base + PATH + "?lang=zh", wait_until="load")
            commission = next(t for t in times_on(page) if t["at"].startswith("2026-09-21T14:13"))
            assert commission["text"] == "2026年9月21日 22:13"
            assert "Asia/Shanghai" in page.locator("footer").inner_text()
        finally:
            context.close()


# Records what reaches the speech: the real speechSynthesis still speaks.
RECORD_SPEECH = """
window.__spoken = [];
if ('speechSynthesis' in window) {
  const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
  window.speechSynthesis.speak = function (utterance) {
    window.__spoken.push({text: utterance.text, lang: utterance.lang});
    return speak(utterance);
  };
}
"""


@pytest.fixture(params=["held", "recalled"])
def alerted(request, tmp_path):
    """A vaccine lot the rules engine held (12 °C for 3 h), or that a regulator
    then recalled with a reason typed in English."""
    from support.rules import VAX, service, vaccine_world

    world = vaccine_world(tmp_path / "ledger")
    service(world, tmp_path).run_once()
    if request.param == "recalled":
        recall = {"reason": "Listeria found in routine testing", "class": "I"}
        world.ok("regulator", "recall", [VAX], recall)
    return request.param, world, VAX.removeprefix(gs1.DEFAULT_BASE)


@pytest.mark.parametrize("language", ["zh", "en"])
def test_read_aloud_speaks_only_the_pages_language(browser, alerted, language):
    """Every utterance is in the page's language, except text a person typed
    (the recall's reason, names, codes), which is its own utterance in its own
    language; the hold's reason, worded by the server, is in the page's."""
    state, world, path = alerted
    page_lang = {"zh": "zh-CN", "en": "en"}[language]
    with serve(world) as base:
        context = browser.new_context(viewport=chromium.PHONE)
        try:
            context.add_init_script(RECORD_SPEECH)
            page = context.new_page()
            page.goto(f"{base}{path}?lang={language}", wait_until="load")
            assert page.evaluate("'speechSynthesis' in window"), "this Chromium cannot speak"
            page.locator("#read-aloud").click()
            page.wait_for_function("window.__spoken.length > 0")
            spoken = page.evaluate("window.__spoken")
            typed = set(
                page.eval_on_selector_all(
                    "[data-speak] [lang]", "es => es.map(e => e.textContent.trim())"
                )
            )
        finally:
            context.close()
    ours = [u for u in spoken if u["lang"] == page_lang]
    others = [u for u in spoken if u["lang"] != page_lang]
    assert ours, spoken
    if language == "zh":
        text = " ".join(u["text"] for u in ours)
        if state == "held":
            assert "暂停使用" in text and "温度记录仪" in text  # the hold's reason, in Chinese
        else:
            assert "已召回" in text and "召回级别 1" in text
            assert any("Listeria found in routine testing" in u["text"] for u in others)
        latin = [w for w in re.findall(r"[A-Za-z]+", text) if w != "C"]
        assert latin == [], (latin, ours)
        assert {u["lang"] for u in others} == {"en"}
        for utterance in others:  # only what a person typed, as typed
            pieces = [p.strip() for p in re.split(r"\. ", utterance["text"]) if p.strip()]
            assert all(p.rstrip(".") in typed or p in typed for p in pieces), (pieces, typed)
    else:
        assert others == [], others  # typed in English on an English page: one voice
        text = " ".join(u["text"] for u in ours)
        if state == "held":
            assert "The longest excursion lasted 3 h 15 min" in text
        else:
            assert "Listeria found in routine testing" in text
