"""static/portal-sign.js in Debian's Chromium: its RFC 8785 canonicalisation
agrees byte for byte with ours (and the rfc8785 package) on tricky values, and
a key made with WebCrypto (non-extractable, kept in IndexedDB, with an
encrypted backup) signs envelopes the ledger accepts."""

from __future__ import annotations

import base64
import json
import re

import pytest
import rfc8785
from support.portal import PASSWORD, Portal, make_app
from support.world import at

from provenance.core.envelope import Envelope
from provenance.core.identity import public_key_from_did
from provenance.core.jcs import canonicalize
from provenance.web import create_app
from provenance.web.background import serving

pytestmark = pytest.mark.slow

TRICKY = [
    1e21,
    1e20,
    0.1,
    -0.0,
    5e-324,
    1.7976931348623157e308,
    123456789012345680000.0,
    0.000001,
    1e-7,
    -1.5,
    9007199254740991,
    '\u20ac\U0001f600 \\ " \n \t \u0001 \u007f \u2028',
    {"b": 1, "a": 2, "\u00e9": 3, "\U0001f600": 4, "\ufb33": 5, "aa": [None, True, False]},
    {"nested": {"z": [1, 2.5, {"y": "x"}], "": 0}},
]


@pytest.fixture(scope="module")
def chromium(browser):
    """Debian's Chromium (tests/support/browser.py)."""
    return browser


@pytest.fixture(scope="module")
def page(chromium, file_world_module):
    world = file_world_module
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
        }
    )
    with serving(app) as base_url:
        tab = chromium.new_page()
        outside = []
        tab.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base_url) else 0)
        tab.goto(base_url + "/portal/login")  # a page under the portal's strict CSP
        tab.add_script_tag(url="/static/portal-sign.js")
        # add_script_tag waits for the load (no polling: the CSP forbids eval)
        assert tab.evaluate("typeof globalThis.provenanceSigning") == "object"
        yield tab
        assert outside == [], outside  # nothing fetched from anywhere else
        tab.close()


@pytest.fixture(scope="module")
def file_world_module(tmp_path_factory):
    from support.world import World

    return World.create(tmp_path_factory.mktemp("world"))


def test_chromium_has_webcrypto_ed25519(page):
    assert page.evaluate("provenanceSigning.supported()") is True


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_our_js_jcs_matches_python(page, value):
    # the value crosses as JSON text, so the page parses exactly these numbers
    text = json.dumps(value)
    ours = page.evaluate("(t) => provenanceSigning.jcs(JSON.parse(t))", text)
    assert ours.encode() == rfc8785.dumps(value)
    assert ours.encode() == canonicalize(value)


def test_a_browser_key_signs_what_the_ledger_accepts(page, file_world_module):
    world = file_world_module
    made = page.evaluate("provenanceSigning.newKey('correct horse battery staple')")
    did, backup = made["did"], json.loads(made["backup"])
    assert did.startswith("did:key:z6Mk") and backup["did"] == did
    public_key_from_did(did)  # a valid did:key of the key's public half
    assert (
        "BEGIN" not in made["backup"] and len(base64.urlsafe_b64decode(backup["key"] + "==")) > 48
    )
    # what IndexedDB keeps cannot be exported
    extractable = page.evaluate(
        "provenanceSigning.loadKey().then((k) => [k.did, k.privateKey.extractable])"
    )
    assert extractable == [did, False]
    world.ok(
        "registrar",
        "enrol",
        None,
        {"subject": did, "type": "party", "name": "Browser Lab", "role": "inspector"}
        | {"custodial": False},
    )
    envelope = {
        "v": 1,
        "kind": "inspect",
        "signer": did,
        "seq": 0,
        "time": at(3),
        "batches": ["https://id.gs1.org/01/09506000134352/10/LOT42"],
        "data": {"result": "pass", "notes": 'caf\u00e9 \U0001f600 0.1 \t\n "q" \\'},
    }
    sig = page.evaluate(
        "(e) => provenanceSigning.signEnvelope(JSON.parse(e))", json.dumps(envelope)
    )
    # the server changes what the browser signed: refused
    altered = {**envelope, "data": {**envelope["data"], "result": "fail"}, "sig": sig}
    (result,) = world.ledger.append([altered])
    assert result.status == "rejected" and result.reason == "bad-signature"
    (result,) = world.ledger.append([Envelope.from_json({**envelope, "sig": sig})])
    assert result.status == "accepted", result
    # a wrong passphrase restores nothing; the right one restores the same key
    wrong = page.evaluate(
        "(b) => provenanceSigning.restoreKey(b, 'not the passphrase!').catch((e) => e.message)",
        made["backup"],
    )
    assert "wrong passphrase" in wrong
    restored = page.evaluate(
        "(b) => provenanceSigning.restoreKey(b, 'correct horse battery staple')", made["backup"]
    )
    assert restored == did


def test_the_portal_end_to_end_signs_in_the_browser(chromium, file_world, tmp_path):
    """A producer whose key lives only in its browser registers a lot through the
    portal: the server prepares, the page shows the bytes, the browser signs."""
    world = file_world
    portal = Portal(world, make_app(world, tmp_path), tmp_path)
    with serving(portal.app) as base_url:
        context = chromium.new_context()
        tab = context.new_page()
        errors: list[str] = []
        tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        # a new party makes its key on the Key page, before it has a user
        tab.goto(base_url + "/portal/key")
        tab.wait_for_selector("#key-status:has-text('no key yet')", timeout=10_000)
        tab.fill("#key-new input[name=passphrase]", "a passphrase to keep")
        with tab.expect_download(timeout=30_000) as downloading:
            tab.click("#key-new button[type=submit]")
        backup_file = tmp_path / "provenance-key-backup.json"  # the user keeps it
        downloading.value.save_as(backup_file)
        backup = json.loads(backup_file.read_text())
        did = backup["did"]
        assert backup["format"] == "provenance-key-backup-v1" and "BEGIN" not in json.dumps(backup)
        tab.wait_for_selector("#key-status:has-text('kept in this browser')", timeout=10_000)
        enrolment = {"subject": did, "type": "party", "name": "Browser Farm", "role": "producer"}
        extra = {"gs1_company_prefixes": ["9506000"], "custodial": False}
        world.ok("registrar", "enrol", None, enrolment | extra)
        portal.accounts.add_user(
            "bfarm", "producer", PASSWORD, party_did=did, party_name="Browser Farm"
        )
        tab.goto(base_url + "/portal/login")
        tab.fill("input[name=name]", "bfarm")
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url(base_url + "/portal/", timeout=10_000)
        tab.goto(base_url + "/portal/key")
        tab.wait_for_selector("#key-status:has-text('enrolled key')", timeout=10_000)
        tab.goto(base_url + "/portal/lots/new")
        tab.fill("input[name=gtin]", "09506000134352")
        tab.fill("input[name=lot]", "BROWSER1")
        tab.fill("input[name=product]", "Kale")
        tab.click("form.form button[type=submit]")
        tab.wait_for_selector("#sign-form", timeout=10_000)
        shown = tab.text_content("#signed-bytes") or ""
        assert '"signer":"' + did + '"' in shown and '"lot":"BROWSER1"' in shown
        uri = "https://id.gs1.org/01/09506000134352/10/BROWSER1"
        assert world.store.lot_by_uri(uri) is None  # not before the browser signs
        tab.click("#sign-form button[type=submit]")
        tab.wait_for_url(re.compile(r"/portal/lots/[0-9]+$"), timeout=10_000)  # the new lot
        assert "Lot registered" in (tab.text_content("body") or "")
        lot = world.store.lot_by_uri(uri)
        assert lot is not None
        producer = world.store.identity_by_id(lot.commissioned_by)
        assert producer is not None and producer.did == did
        assert portal.accounts.party_keys() == []  # the server never held the key
        assert errors == [], errors
        context.close()
        # a second browser (an empty IndexedDB) gets the key from the backup file only
        other = chromium.new_context()
        tab = other.new_page()
        tab.goto(base_url + "/portal/key")
        tab.wait_for_selector("#key-status:has-text('no key yet')", timeout=10_000)
        tab.set_input_files("#key-restore input[name=backup]", str(backup_file))
        tab.fill("#key-restore input[name=passphrase]", "a passphrase to keep")
        tab.click("#key-restore button[type=submit]")
        tab.wait_for_selector("#key-status:has-text('Restored')", timeout=30_000)
        seq = world.ledger.next_seq(did)  # the Key page runs our script: sign with it
        envelope = {
            "v": 1,
            "kind": "inspect",
            "signer": did,
            "seq": seq,
            "time": at(5),
            "batches": [uri],
            "data": {"result": "pass"},
        }
        sig = tab.evaluate(
            "(e) => provenanceSigning.signEnvelope(JSON.parse(e))", json.dumps(envelope)
        )
        (result,) = world.ledger.append([{**envelope, "sig": sig}])
        assert result.status == "accepted", result
        other.close()
