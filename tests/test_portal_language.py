"""The portal in the reader's language and words (docs/portal.md, "Languages and
wording"): Chinese or English by the scan page's switch, event kinds as
sentences, times in the reader's zone, amounts with their units by name and
plurals from the catalog; forms that put what to fix next to the field, values
kept, while the JSON API keeps its precise codes."""

from __future__ import annotations

import re
from html import unescape
from typing import ClassVar

import pytest
from support.portal import PASSWORD, Portal, make_app
from support.world import GTIN, LOT, at

from provenance.web import wording
from provenance.web.background import serving

FORM = {
    "gtin": GTIN,
    "lot": "ZH1",
    "product": "Baby spinach",
    "quantity": "1600",
    "unit": "",
    "origin": "North field",
    "country": "KE",
}


def text(response) -> str:
    return unescape(response.get_data(as_text=True))


def _label_of(page: str, name: str) -> str:
    """The <label> that holds the field *name* (its message sits inside it)."""
    for label in re.findall(r"<label>.*?</label>", page, flags=re.S):
        if f'name="{name}"' in label:
            return label
    raise AssertionError(f"no label holds the field {name}")


def test_an_amount_without_a_unit_is_explained_next_to_the_field(portal):
    response = portal.post("farm1", "/portal/lots/new", FORM)
    assert response.status_code == 400  # a 4xx with the form, not a 500 or a full-page refusal
    page = text(response)
    assert "Choose the unit of the amount." in _label_of(page, "unit")
    assert "data.quantity.unit" not in page and "HTTP 400" not in page
    for name in ("gtin", "lot", "product", "quantity", "origin", "country"):
        assert f'value="{FORM[name]}"' in _label_of(page, name), name  # values kept
    assert portal.world.store.lot_by_uri(f"https://id.gs1.org/01/{GTIN}/10/ZH1") is None


def test_form_messages_come_in_the_readers_language(portal):
    portal.client("farm1").get("/portal/?lang=zh")  # the choice is remembered
    response = portal.post("farm1", "/portal/lots/new", {**FORM, "gtin": "12ab"})
    assert response.status_code == 400
    page = text(response)
    assert "请选择数量的单位。" in _label_of(page, "unit")
    assert "条码号是 8、12、13 或 14 位数字" in _label_of(page, "gtin")
    assert 'value="12ab"' in page and '<html lang="zh-CN">' in page


def test_a_refusal_of_the_ledger_lands_on_its_field(portal):
    bad_check_digit = {**FORM, "gtin": "9506000134353", "unit": "KGM"}
    response = portal.post("farm1", "/portal/lots/new", bad_check_digit)
    assert response.status_code == 400
    assert "check digit" in _label_of(text(response), "gtin")


def test_units_are_chosen_from_a_list_shown_by_name(portal):
    page = text(portal.client("farm1").get("/portal/lots/new?lang=zh"))
    unit = _label_of(page, "unit")
    assert "<select" in unit and '<option value="KGM">公斤（kg）</option>' in unit
    assert '<option value="EA">件</option>' in unit


def test_the_api_keeps_its_precise_codes(portal):
    token = portal.token("farm")
    body = {"gtin": GTIN, "lot": "A", "product": "K", "quantity": {"value": 5, "unit": ""}}
    response = portal.api(
        "POST", "/api/v1/lots", token, json=body, headers={"Accept-Language": "zh"}
    )
    assert response.status_code == 400
    assert response.json["error"] == "bad request"
    assert "quantity.unit" in response.json["detail"]


def test_the_lot_page_speaks_chinese_with_human_times_and_units(portal):
    form = {**FORM, "unit": "EA"}
    made = portal.post("farm1", "/portal/lots/new", form)
    assert made.status_code == 303
    lot_page = portal.client("farm1").get(made.headers["Location"] + "?lang=zh&tz=Asia/Shanghai")
    page = text(lot_page)
    assert re.search(r"<strong>由 \S+ 生产</strong>", page), page  # "Produced by …"
    assert "共 1,600 件，还剩 1,600 件" in page
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2} \(Asia/Shanghai\)", page)
    assert "commission" not in re.sub(r"<[^>]+>", " ", page)  # no raw event kinds
    assert re.search(r"T\d{2}:\d{2}:\d{2}(\.\d+)?Z", re.sub(r"<[^>]+>", " ", page)) is None
    english = text(portal.client("farm1").get(made.headers["Location"] + "?lang=en&tz=UTC"))
    assert "1,600 packs left of 1,600 packs" in english and "(UTC)" in english


def test_a_lots_alerts_are_said_in_the_readers_words(portal):
    """A lot that was too warm: the producer's list and the lot's page say the
    excursion as the scan page does, in the page's language and the reader's
    zone, not the ledger's English sentence with a protocol timestamp; a lesser
    state beside it is named, not given as its code."""
    world = portal.world
    hours = [1 + k / 4 for k in range(4 * 12)]  # 1 h … 13 h, a gap from 13 h on
    world.ledger.append([world.reading(h, 11.0 if 4 <= h < 8 else 3.0) for h in hours])
    plain = re.compile(r"T\d{2}:\d{2}:\d{2}(\.\d+)?Z|one excursion lasted|tolerated")
    for url in ("/portal/", f"/portal/lots/{portal.lot_id(LOT)}"):
        page = re.sub(
            r"<[^>]+>", " ", text(portal.client("farm1").get(f"{url}?lang=zh&tz=Asia/Shanghai"))
        )
        assert (
            "最长一次偏离：自 2026年9月22日 01:58 (Asia/Shanghai) 起过热 4 小时 15 分钟" in page
        ), page
        assert plain.search(page) is None, plain.search(page)
    english = text(portal.client("farm1").get("/portal/?lang=en&tz=UTC"))
    # the whole life in one verdict, as the scan page says it (wording.life_sentences)
    assert "Outside 0–5 °C for 4 h 15 min in all over its journey." in english
    assert "Longest excursion: 4 h 15 min too warm from 21 Sep 2026, 17:58 (UTC)." in english
    assert "Peak: 11.0 °C." in english


@pytest.mark.parametrize(
    ("lang", "value", "unit", "shown"),
    [
        ("en", 1600, "EA", "1,600 packs"),
        ("en", 1, "EA", "1 pack"),
        ("en", 500, "KGM", "500 kg"),
        ("en", 2.5, "LTR", "2.5 L"),
        ("zh", 1600, "EA", "1,600 件"),
        ("zh", 500, "KGM", "500 公斤"),
        ("en", 3, "XYZ", "3 XYZ"),  # a code the list does not name shows as its code
    ],
)
def test_amounts_are_worded_by_the_catalog(portal, lang, value, unit, shown):
    with portal.app.test_request_context(f"/?lang={lang}"):
        assert wording.amount(value, unit) == shown


def test_plurals_come_from_the_catalog(portal):
    class Party:
        name = "Fresh Cuts"

    class Step:
        kind = "transform"
        actor = Party()
        counterpart = None
        details: ClassVar[dict[str, object]] = {"role": "input", "outputs": 1}

    with portal.app.test_request_context("/?lang=en"):
        assert wording.step_sentence(Step()) == "Used by Fresh Cuts to make 1 new lot"
        Step.details = {"role": "output", "inputs": 1}
        assert wording.step_sentence(Step()) == "Made by Fresh Cuts from 1 lot"
        Step.details = {"role": "output", "inputs": 3}
        assert wording.step_sentence(Step()) == "Made by Fresh Cuts from 3 lots"


def test_a_bad_zone_falls_back_to_utc(portal):
    page = text(portal.client("farm1").get("/portal/?tz=../../etc/passwd"))
    assert "Times are shown in UTC." in page


# --- in a real browser


CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]


@pytest.fixture(scope="module")
def chromium():
    import ctypes.util
    from pathlib import Path

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed (./run tests installs it as root)")
    if ctypes.util.find_library("atomic") is None:
        pytest.skip("libatomic1, which Playwright's driver needs, is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, timeout=30_000
        )
        yield browser
        browser.close()


@pytest.mark.slow
def test_the_portal_in_chinese_in_a_browser(chromium, file_world, tmp_path):
    """A farmer whose browser speaks Chinese, in Shanghai: the register page and
    the lot page are in Chinese, an amount without a unit is explained next to
    the unit, and the lot shows "1,600 件" and a time in the browser's zone."""
    world = file_world
    portal = Portal(world, make_app(world, tmp_path), tmp_path)
    portal.user("farm1", "farm")
    shots = tmp_path
    with serving(portal.app) as base_url:
        context = chromium.new_context(
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            viewport={"width": 390, "height": 844},
        )
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        tab.goto(base_url + "/portal/login")
        assert tab.text_content("h1") == "登录"  # from Accept-Language
        tab.fill("input[name=name]", "farm1")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("form.form button[type=submit]")
        tab.wait_for_url(base_url + "/portal/", timeout=10_000)
        tab.goto(base_url + "/portal/lots/new")
        assert tab.text_content("h1") == "登记批次"
        tab.fill("input[name=gtin]", GTIN)
        tab.fill("input[name=lot]", "ZH7")
        tab.fill("input[name=product]", "菠菜")
        tab.fill("input[name=quantity]", "1600")
        tab.click("form.form button[type=submit]")
        message = tab.wait_for_selector("label:has(select[name=unit]) .field-error", timeout=10_000)
        assert message.text_content() == "请选择数量的单位。"
        assert tab.input_value("input[name=quantity]") == "1600"  # kept
        assert tab.input_value("input[name=product]") == "菠菜"
        tab.screenshot(path=str(shots / "portal-zh-register-error.png"), full_page=True)
        tab.select_option("select[name=unit]", "EA")
        tab.click("form.form button[type=submit]")
        tab.wait_for_url(re.compile(r"/portal/lots/[0-9]+$"), timeout=10_000)
        body = tab.text_content("body") or ""
        assert "批次已登记" in body and "共 1,600 件，还剩 1,600 件" in body
        assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2} \(Asia/Shanghai\)", body), body
        assert "时间按 Asia/Shanghai 时区显示。" in body
        tab.screenshot(path=str(shots / "portal-zh-lot.png"), full_page=True)
        # the one console error: the form came back as a 400, as it should
        assert [e for e in errors if "status of 400" not in e] == [], errors
        context.close()


def test_the_transformation_form_explains_itself_too(portal):
    from support.world import LOT

    portal.world.ship_and_receive("farm", "packer", [LOT], 2)
    form = {
        "in0_batch": LOT,
        "in0_quantity": "100",
        "in0_unit": "",
        "out0_gtin": GTIN,
        "out0_lot": "BAG9",
        "out0_product": "Kale bag",
        "out0_quantity": "400",
        "out0_unit": "EA",
    }
    response = portal.post("packer1", "/portal/transform", form)
    assert response.status_code == 400
    page = text(response)
    assert "Choose the unit of the amount." in _label_of(page, "in0_unit")
    assert 'value="100"' in _label_of(page, "in0_quantity")
    assert 'value="BAG9"' in _label_of(page, "out0_lot")
    assert '<option value="EA" selected>' in _label_of(page, "out0_unit")
    assert f'<option value="{LOT}" selected>' in _label_of(page, "in0_batch")
    bad_digit = {**form, "in0_unit": "KGM", "out0_gtin": "9506000134353"}
    response = portal.post("packer1", "/portal/transform", bad_digit)
    assert response.status_code == 400
    assert "check digit" in _label_of(text(response), "out0_gtin")
    done = portal.post("packer1", "/portal/transform", {**form, "in0_unit": "KGM"})
    assert done.status_code == 303


# --- ship, receive, upload, lift and release explain themselves too


def _by(page: str, name: str) -> str:
    """The <label> or form row that holds the field *name*."""
    return _label_of(page, name)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_ship_form_explains_itself(portal, lang):
    world = portal.world
    lot_id = portal.lot_id(LOT)
    url = f"/portal/lots/{lot_id}/ship?lang={lang}"
    response = portal.post("farm1", url, {"to": "", "location": "Farm gate", "country": "KEN"})
    assert response.status_code == 400
    page = text(response)
    said = {"en": "Choose the party to ship to.", "zh": "请选择收货方。"}[lang]
    assert said in _by(page, "to")
    country = {"en": "two-letter country code", "zh": "两个字母"}[lang]
    assert country in _by(page, "country")
    assert 'value="Farm gate"' in _by(page, "location")  # kept
    # the ledger refuses: a recalled lot may only go back
    world.ok("regulator", "recall", [LOT], {"reason": "x", "class": "I"}, time=at(2))
    form = {"to": world.did("dc"), "location": "Farm gate"}
    refused = portal.post("farm1", url, form)
    assert refused.status_code == 409
    page = text(refused)
    recalled = {"en": "This lot is recalled", "zh": "此批次已被召回"}[lang]
    assert recalled in page and "the ledger refused it" not in page
    assert f'<option value="{world.did("dc")}" selected>' in _by(page, "to")
    assert 'value="Farm gate"' in _by(page, "location")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_receiving_twice_is_said_on_the_shipments_page(portal, lang):
    world = portal.world
    lot_id = portal.lot_id(LOT)
    assert (
        portal.post(
            "farm1", f"/portal/lots/{lot_id}/ship", {"to": world.did("carrier")}
        ).status_code
        == 303
    )
    shipment = world.store.chain_events(world.store.chain_by_subject(LOT)[0])[-1].envelope
    url = f"/portal/shipments/{shipment.event_id}/receive?lang={lang}"
    bad = portal.post("carrier1", url, {"condition": "cold", "country": "K1"})
    assert bad.status_code == 400
    page = text(bad)
    assert 'value="cold"' in _by(page, "condition")
    assert {"en": "two-letter", "zh": "两个字母"}[lang] in _by(page, "country")
    assert portal.post("carrier1", url, {"condition": "cold"}).status_code == 303
    again = portal.post("carrier1", url, {"condition": "cold"})
    assert again.status_code == 409
    said = {"en": "This was already done", "zh": "已经做过"}[lang]
    assert said in text(again) and "the ledger refused it" not in text(again)
    no_such = portal.post("carrier1", f"/portal/shipments/{'ab' * 5}/receive?lang={lang}")
    assert no_such.status_code == 400  # not a shipment's id: the page, not a 500
    assert {"en": "This shipment is not in the ledger.", "zh": "账本中没有这批发货。"}[
        lang
    ] in text(no_such)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_upload_form_explains_itself(portal, lang):
    import io

    lot_id = portal.lot_id(LOT)
    url = f"/portal/lots/{lot_id}/documents?lang={lang}"
    missing = portal.post(
        "farm1", url, {"result": "fail", "notes": "audit"}, content_type="multipart/form-data"
    )
    assert missing.status_code == 400
    page = text(missing)
    assert {"en": "Choose a file to attach.", "zh": "请选择要附上的文件。"}[lang] in _by(
        page, "file"
    )
    assert 'value="audit"' in _by(page, "notes")
    assert '<option value="fail" selected>' in _by(page, "result")
    exe = {"file": (io.BytesIO(b"MZ\x90\x00"), "tool.exe"), "result": "pass", "notes": "n"}
    refused = portal.post("farm1", url, exe, content_type="multipart/form-data")
    assert refused.status_code == 415
    said = {"en": "Attach a PDF, PNG", "zh": "请附上 PDF"}[lang]
    assert said in _by(text(refused), "file")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_regulators_lift_and_release_explain_themselves(portal, lang):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    world = portal.world
    world.ok("regulator", "recall", [LOT], {"reason": "x", "class": "II"}, time=at(2))
    no_reason = portal.post(
        "reg1", f"/portal/regulator/lift?lang={lang}", {"lot": LOT, "reason": " "}
    )
    assert no_reason.status_code == 400
    said = {"en": "Say why: the lot's record shows it.", "zh": "请说明原因"}[lang]
    assert said in _by(text(no_reason), "reason")
    done = portal.post("reg1", "/portal/regulator/lift", {"lot": LOT, "reason": "retested"})
    assert done.status_code == 303
    again = portal.post(
        "reg1", f"/portal/regulator/lift?lang={lang}", {"lot": LOT, "reason": "again"}
    )
    assert 400 <= again.status_code < 500
    page = text(again)
    assert 'value="again"' in _by(page, "reason")
    assert "the ledger refused it" not in page
    world.keys["rules"] = Ed25519PrivateKey.generate()
    world.ok(
        "registrar",
        "enrol",
        None,
        {"subject": world.did("rules"), "type": "rules", "name": "rules"},
    )
    hold = world.ok("rules", "hold", [LOT], {"rule": "cold", "reason": "4 h at 11 °C"})
    form = {"lots": LOT, "hold": hold.event_id, "reason": ""}
    empty = portal.post("reg1", f"/portal/regulator/holds/release?lang={lang}", form)
    assert empty.status_code == 400
    assert said in _by(text(empty), "reason")
    assert (
        portal.post("reg1", "/portal/regulator/holds/release", {**form, "reason": "ok"}).status_code
        == 303
    )
    twice = portal.post(
        "reg1", f"/portal/regulator/holds/release?lang={lang}", {**form, "reason": "ok"}
    )
    assert 400 <= twice.status_code < 500
    assert "the ledger refused it" not in text(twice)
