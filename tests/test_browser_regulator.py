"""The recall preview in a real browser (Debian's Chromium driven by
Playwright): a regulator whose key lives in its browser opens a lot's recall
form, chooses a class (there is no default), sees what the cascade reaches —
the lot made from it, its holder and quantity — confirms, signs in the browser,
and the lots are recalled. Screenshots go to the test's tmp dir and
`.artifacts/screenshots/`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.portal import PASSWORD, Portal, make_app
from support.world import GTIN, LOT, at

from provenance.core import gs1
from provenance.web.background import serving

ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
BAG = gs1.lot_uri(GTIN, "BAG1")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium(browser):
    """Debian's Chromium (tests/support/browser.py)."""
    return browser


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / name)


def test_recall_preview_then_confirm_in_the_browser(chromium, file_world, tmp_path):
    world = file_world
    world.ship_and_receive("farm", "packer", [LOT], 2)
    world.ok(
        "packer",
        "transform",
        [LOT, BAG],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 100, "unit": "KGM"}}],
            "outputs": [
                {"batch": BAG, "quantity": {"value": 400, "unit": "EA"}, "product": "Kale bag"}
            ],
            "location": {"name": "Packhouse"},
        },
        time=at(4),
    )
    portal = Portal(world, make_app(world, tmp_path), tmp_path)
    with serving(portal.app) as base_url:
        context = chromium.new_context(viewport=DESKTOP)
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        errors: list[str] = []
        elsewhere: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.on("request", lambda r: None if r.url.startswith(base_url) else elsewhere.append(r.url))
        # the regulator makes its key in this browser; the registrar enrols it
        tab.goto(base_url + "/portal/key")
        tab.wait_for_selector("#key-status:has-text('no key yet')")
        tab.fill("#key-new input[name=passphrase]", "a passphrase to keep")
        with tab.expect_download(timeout=30_000) as downloading:
            tab.click("#key-new button[type=submit]")
        backup = tmp_path / "backup.json"
        downloading.value.save_as(backup)
        did = json.loads(backup.read_text())["did"]
        tab.wait_for_selector("#key-status:has-text('kept in this browser')")
        enrol = {"subject": did, "type": "party", "name": "Food Agency", "role": "regulator"}
        world.ok("registrar", "enrol", None, enrol)
        portal.accounts.add_user(
            "agency", "regulator", PASSWORD, party_did=did, party_name="Food Agency"
        )
        tab.goto(base_url + "/portal/login")
        tab.fill("input[name=name]", "agency")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_load_state("load")
        shot(tab, tmp_path, "portal-regulator-home-1280.png")

        # the lot's recall form: no class is chosen until the regulator chooses
        tab.goto(f"{base_url}/portal/lots/{portal.lot_id(LOT)}")
        form = tab.locator("#recall-form")
        assert form.locator("input[name=class]:checked").count() == 0
        form.locator("input[name=reason]").fill("Listeria found in routine testing")
        form.locator("input[name=class][value=II]").check()
        shot(tab, tmp_path, "portal-lot-recall-form-1280.png")
        form.get_by_role("button", name="Preview the recall").click()
        tab.wait_for_selector("#reach")

        # the preview: the lot made from it, who holds it and how much; nothing signed yet
        reach = tab.locator("#reach").inner_text()
        assert "BAG1" in reach and "made from LOT42" in reach
        assert "packer (processor)" in reach and "400 packs" in reach
        assert "The recall reaches 2 lots" in tab.locator("#reach-summary").inner_text()
        assert not world.store.lot_by_uri(LOT).recalled
        assert tab.locator("input[name=class][value=II]").is_checked()
        shot(tab, tmp_path, "portal-recall-preview-1280.png")
        tab.set_viewport_size(PHONE)
        assert tab.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(tab, tmp_path, "portal-recall-preview-390.png")
        tab.set_viewport_size(DESKTOP)

        # confirm, then sign in the browser
        tab.check("#recall-confirm input[name=confirm]")
        tab.locator("#recall-confirm").get_by_role("button", name="Sign the recall").click()
        tab.wait_for_selector("#sign-form")
        shown = tab.text_content("#signed-bytes") or ""
        assert '"kind":"recall"' in shown and '"class":"II"' in shown
        assert not world.store.lot_by_uri(BAG).recalled  # not before the browser signs
        tab.click("#sign-form button[type=submit]")
        tab.wait_for_url(re.compile(r"/portal/lots/[0-9]+$"))
        assert "2 lots are recalled" in (tab.text_content("body") or "")
        assert world.store.lot_by_uri(LOT).recalled and world.store.lot_by_uri(BAG).recalled

        tab.goto(f"{base_url}/portal/regulator/recalls/{portal.lot_id(LOT)}")
        assert "last recorded at Packhouse" in tab.locator("table").first.inner_text()
        shot(tab, tmp_path, "portal-recall-report-1280.png")
        world.keys["rules"] = Ed25519PrivateKey.generate()
        rules = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
        world.ok("registrar", "enrol", None, rules)
        evidence = {"excursions": [{"start": at(1), "end": at(3), "duration_s": 7200}]}
        world.ok(
            "rules", "hold", [BAG], {"rule": "cold", "reason": "2 h at 11 °C", "evidence": evidence}
        )
        flag = {"signal": "counterfeit", "rule": "far", "reason": "KE and DE", "key": "serial:S1"}
        world.ok("rules", "flag", [LOT], flag)
        tab.goto(f"{base_url}/portal/regulator/overview")
        rows = tab.locator("#overview tbody tr").all_inner_texts()
        assert "Flag: counterfeit" in rows[0] and "Excursion: on hold" in rows[1]
        shot(tab, tmp_path, "portal-regulator-overview-1280.png")
        assert errors == [], errors
        assert elsewhere == [], elsewhere
        context.close()


def test_ship_to_search_works_without_javascript(chromium, file_world, tmp_path):
    """The farm's "Ship to" lists only receivers a shipment can go to, and its
    search box narrows them on the server, with scripts off."""
    world = file_world
    portal = Portal(world, make_app(world, tmp_path), tmp_path)
    portal.user("farm1", "farm")
    with serving(portal.app) as base_url:
        context = chromium.new_context(viewport=PHONE, java_script_enabled=False)
        tab = context.new_page()
        tab.set_default_timeout(15_000)
        tab.goto(base_url + "/portal/login")
        tab.fill("input[name=name]", "farm1")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_load_state("load")
        tab.goto(f"{base_url}/portal/lots/{portal.lot_id(LOT)}")
        offered = tab.locator("select[name=to] option").all_inner_texts()[1:]
        assert offered == [
            "carrier (carrier)",
            "dc (distributor)",
            "packer (processor)",
            "store (retailer)",
        ]
        tab.fill("input[name=to_q]", "retail")
        tab.get_by_role("button", name="Search").click()
        tab.wait_for_load_state("load")
        assert tab.locator("select[name=to] option").all_inner_texts()[1:] == ["store (retailer)"]
        shot(tab, tmp_path, "portal-ship-to-search-390.png")
        chosen = tab.locator("select[name=to]").evaluate("s => s.selectedOptions[0].text")
        assert chosen == "store (retailer)"  # the one match is chosen
        tab.get_by_role("button", name="Ship", exact=True).click()
        tab.wait_for_load_state("load")
        assert "custody moves when the receiver confirms receipt" in (
            tab.text_content("body") or ""
        )
        assert world.store.open_shipment_for(portal.lot_id(LOT)) is not None
        context.close()
