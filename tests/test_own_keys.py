"""Parties hold their own keys (issue 11, part 1): the operator cannot sign as a
party that holds its own key, a regulator's key is never made or kept by the
operator, custodial keys are marked, and what a browser signed cannot be changed
by the server afterwards."""

from __future__ import annotations

import json
import stat

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.portal import (
    SIGN_PAGE,
    Portal,
    browser_signature,
    make_app,
    sign_action,
    unsigned_envelopes,
)
from support.world import LOT, at

from provenance.cli.main import main
from provenance.core.errors import ValidationError
from provenance.core.kinds import validate_data
from provenance.core.signing import did_of, sign
from provenance.web.portal.browser_keys import pending_signatures


@pytest.fixture
def own_key(file_world, tmp_path) -> Portal:
    """The World's carrier and a farm enrolled by their public keys only (the
    keys stay with the World, standing for the parties' own machines)."""
    world = file_world
    world.keys["ownfarm"] = Ed25519PrivateKey.generate()
    data = {
        "subject": world.did("ownfarm"),
        "type": "party",
        "name": "Own Farm",
        "role": "producer",
        "gs1_company_prefixes": ["9506000"],
        "custodial": False,
    }
    world.ok("registrar", "enrol", None, data)
    portal = Portal(world, make_app(world, tmp_path), tmp_path)
    portal.user("own1", "ownfarm", key=False)
    portal.user("reg1", "regulator")  # World's regulator: a legacy enrolment, but a regulator
    return portal


def _log_size(portal: Portal) -> int:
    return portal.world.store.log_size()


def _new_lot_form(lot: str) -> dict[str, str]:
    return {"gtin": "09506000134352", "lot": lot, "product": "Kale"}


# --- the operator tries to sign as a party that holds its own key


def test_the_vault_holds_no_key_of_a_party_that_holds_its_own(own_key):
    identity = own_key.world.store.identity_by_did(own_key.world.did("ownfarm"))
    with pytest.raises(ValidationError, match="holds its own key"):
        own_key.accounts.store_party_key(
            identity.did,
            "Own Farm",
            own_key.world.keys["ownfarm"],
            role="producer",
            custodial=False,
        )
    regulator = own_key.world.store.identity_by_did(own_key.world.did("regulator"))
    with pytest.raises(ValidationError, match="regulator"):
        own_key.accounts.store_party_key(
            regulator.did,
            "regulator",
            own_key.world.keys["regulator"],
            role="regulator",
            custodial=True,  # even an old enrolment that said nothing
        )
    assert own_key.accounts.party_keys() == []


def test_the_portal_does_not_sign_for_it_it_asks_the_browser(own_key):
    before = _log_size(own_key)
    client = own_key.client("own1")
    page = client.post(
        "/portal/lots/new", data={"csrf_token": own_key.csrf("own1"), **_new_lot_form("OWN1")}
    )
    assert page.status_code == 200 and SIGN_PAGE in page.get_data(as_text=True)
    (envelope,) = unsigned_envelopes(page)
    assert envelope["signer"] == own_key.world.did("ownfarm") and "sig" not in envelope
    assert _log_size(own_key) == before  # nothing is signed or stored by the server
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert '<script src="/static/portal-sign.js"></script>' in page.get_data(as_text=True)
    assert own_key.accounts.party_keys() == []
    # the API, which has no browser, refuses rather than signing
    token = own_key.token("ownfarm", key=False)
    body = {"gtin": "09506000134352", "lot": "OWN2", "product": "Kale"}
    refused = own_key.api("POST", "/api/v1/lots", token, json=body)
    assert refused.status_code == 503 and refused.json["reason"] == "no-key"
    assert _log_size(own_key) == before


@pytest.mark.parametrize("forger", ["registrar", "log", "fresh"])
def test_a_signature_by_any_other_key_is_refused(own_key, forger):
    """The operator holds the registrar and log keys and can make any other: none
    of them makes a signature the ledger takes as the farm's."""
    world = own_key.world
    key = {
        "registrar": world.keys["registrar"],
        "log": world.log_key,
        "fresh": Ed25519PrivateKey.generate(),
    }[forger]
    before = _log_size(own_key)
    page = own_key.client("own1").post(
        "/portal/lots/new", data={"csrf_token": own_key.csrf("own1"), **_new_lot_form("FORGED")}
    )
    (envelope,) = unsigned_envelopes(page)
    forged = own_key.client("own1").post(
        sign_action(page),
        data={
            "csrf_token": own_key.csrf("own1"),
            "signatures": json.dumps([browser_signature(key, envelope)]),
        },
    )
    assert forged.status_code == 400 and "bad-signature" in forged.get_data(as_text=True)
    assert _log_size(own_key) == before
    # straight into the ledger's one door, signed as the farm's did with another key
    data = {"gtin": "09506000134352", "lot": "FORGED", "product": "Kale"}
    own = sign(key, kind="commission", seq=0, time=at(2), data=data, lots=[envelope["batches"][0]])
    as_farm = {**own.to_json(), "signer": world.did("ownfarm")}
    (result,) = world.ledger.append([as_farm])
    assert result.status == "rejected" and result.reason == "bad-signature"
    assert _log_size(own_key) == before


def test_what_the_browser_signed_cannot_be_changed_by_the_server(own_key):
    before = _log_size(own_key)
    client = own_key.client("own1")
    page = client.post(
        "/portal/lots/new", data={"csrf_token": own_key.csrf("own1"), **_new_lot_form("OWN3")}
    )
    (envelope,) = unsigned_envelopes(page)
    signature = browser_signature(own_key.world.keys["ownfarm"], envelope)
    action = sign_action(page)
    token = action.rsplit("/", 1)[1]
    pending = pending_signatures_of(own_key, token)
    pending.envelopes[0]["data"]["product"] = "Kale (organic)"  # a server's edit after signing
    altered = client.post(
        action, data={"csrf_token": own_key.csrf("own1"), "signatures": json.dumps([signature])}
    )
    assert altered.status_code == 400 and "bad-signature" in altered.get_data(as_text=True)
    assert _log_size(own_key) == before
    # unaltered, the same signature goes in: the browser's own signing works
    page = client.post(
        "/portal/lots/new", data={"csrf_token": own_key.csrf("own1"), **_new_lot_form("OWN3")}
    )
    (envelope,) = unsigned_envelopes(page)
    done = client.post(
        sign_action(page),
        data={
            "csrf_token": own_key.csrf("own1"),
            "signatures": json.dumps([browser_signature(own_key.world.keys["ownfarm"], envelope)]),
        },
    )
    assert done.status_code == 303, done.get_data(as_text=True)
    assert _log_size(own_key) == before + 1


def pending_signatures_of(portal: Portal, token: str):
    with portal.app.app_context():
        found = pending_signatures().peek(token)
    assert found is not None
    return found


def test_a_prepared_action_is_only_the_preparing_users(own_key):
    page = own_key.client("own1").post(
        "/portal/lots/new", data={"csrf_token": own_key.csrf("own1"), **_new_lot_form("OWN4")}
    )
    stolen = own_key.client("reg1").post(
        sign_action(page), data={"csrf_token": own_key.csrf("reg1"), "signatures": "[]"}
    )
    assert stolen.status_code == 404


# --- regulator keys are never made on or kept by the operator's machines


def test_party_add_regulator_without_public_key_is_refused(tmp_path):
    runner = CliRunner()
    base = ["--db", str(tmp_path / "p.db"), "--keys", str(tmp_path / "keys")]
    assert runner.invoke(main, [*base, "init"]).exit_code == 0
    refused = runner.invoke(main, [*base, "party", "add", "Agency", "--role", "regulator"])
    assert refused.exit_code == 1 and refused.output.startswith("Error: ")
    assert "provenance key new --out" in refused.output and "--public-key" in refused.output
    assert not (tmp_path / "keys" / "parties").exists()  # no key was made
    made = runner.invoke(main, ["key", "new", "--out", str(tmp_path / "agency.pem")])
    assert made.exit_code == 0 and made.output.startswith("did:key:z6Mk")
    assert stat.S_IMODE((tmp_path / "agency.pem").stat().st_mode) == 0o600
    again = runner.invoke(main, ["key", "new", "--out", str(tmp_path / "agency.pem")])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    did = made.output.strip()
    args = [*base, "party", "add", "Agency", "--role", "regulator", "--public-key", did]
    assert runner.invoke(main, args).exit_code == 0
    listed = runner.invoke(main, [*base, "party", "list", "--json"]).output
    assert json.loads(listed)["custodial"] is False
    # signing with a key file that is not the party's is refused before anything is signed
    other = tmp_path / "other.pem"
    runner.invoke(main, ["key", "new", "--out", str(other)])
    wrong = runner.invoke(
        main,
        [*base, "recall", LOT, "--as", "Agency", "--key", str(other), "--reason", "x"],
    )
    assert wrong.exit_code == 1 and "is not the key of Agency" in wrong.output
    no_key = runner.invoke(main, [*base, "recall", LOT, "--as", "Agency", "--reason", "x"])
    assert no_key.exit_code == 1 and "--key FILE" in no_key.output


def test_the_protocol_refuses_a_custodial_regulator():
    subject = did_of(Ed25519PrivateKey.generate())
    data = {"subject": subject, "type": "party", "name": "A", "role": "regulator"}
    with pytest.raises(ValidationError, match="regulator's key is never held"):
        validate_data("enrol", {**data, "custodial": True}, None)
    validate_data("enrol", {**data, "custodial": False}, None)
    validate_data("enrol", data, None)  # an old enrolment stays valid
    device = {"subject": subject, "type": "device", "name": "p", "owner": subject}
    with pytest.raises(ValidationError, match="only parties"):
        validate_data("enrol", {**device, "custodial": True}, None)


# --- custodial keys are marked on the scan page


def test_scan_page_says_who_signed_on_whose_behalf(own_key):
    world = own_key.world
    world.keys["ownlab"] = Ed25519PrivateKey.generate()
    lab = {"subject": world.did("ownlab"), "type": "party", "name": "Own Lab"}
    world.ok("registrar", "enrol", None, {**lab, "role": "inspector", "custodial": False})
    world.ok("ownlab", "inspect", [LOT], {"result": "pass"}, time=at(3))
    page = own_key.app.test_client().get(
        LOT.replace("https://id.gs1.org", ""), headers={"Accept": "text/html"}
    )
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "signed by Own Lab" in body  # holds its own key
    assert "signed by the operator on behalf of" in body  # the World's farm: an old enrolment


def test_user_add_never_imports_a_regulators_key_even_an_old_one(tmp_path, monkeypatch):
    """A regulator enrolled before the custodial field, its key still in the
    operator's key folder: the portal must not take it in."""
    from provenance.cli.context import key_name
    from provenance.infra.keystore import KeyStore

    monkeypatch.setenv("PROVENANCE_SECRET_KEY", "s" * 40)
    runner = CliRunner()
    keys = tmp_path / "keys"
    base = ["--db", str(tmp_path / "p.db"), "--keys", str(keys)]
    assert runner.invoke(main, [*base, "init"]).exit_code == 0
    old = KeyStore(keys / "parties").create(key_name("Old Agency"))  # as `party add` made it
    enrol = {
        "kind": "enrol",
        "data": {"subject": did_of(old), "type": "party", "name": "Old Agency"}
        | {"role": "regulator"},  # no custodial field: an enrolment from before it
    }
    appended = runner.invoke(
        main,
        [*base, "event", "append", "--as", str(keys / "registrar.pem")],
        input=json.dumps(enrol),
    )
    assert appended.exit_code == 0, appended.output
    listed = json.loads(runner.invoke(main, [*base, "party", "list", "--json"]).output)
    assert listed["custodial"] is True  # old enrolments count as custodial
    added = runner.invoke(
        main,
        [
            *base,
            "user",
            "add",
            "rita",
            "--role",
            "regulator",
            "--party",
            "Old Agency",
            "--password-stdin",
        ],
        input="correct horse battery\n",
    )
    assert added.exit_code == 0, added.output
    assert "holds its own key" in added.output and "browser" in added.output
    keys_held = runner.invoke(main, [*base, "portal", "keys"])
    assert keys_held.exit_code == 0 and keys_held.output == ""
    imported = runner.invoke(main, [*base, "portal", "key-import", "Old Agency"])
    assert imported.exit_code == 1 and "is a regulator" in imported.output


@pytest.mark.parametrize(
    "signatures",
    ['["x"]', "[]", '["a", "b"]', "{}", "not json", "", "[1]", '["' + "A" * 86 + '"]'],
)
def test_bad_signatures_are_refused_with_a_reason_never_a_500(own_key, signatures):
    before = _log_size(own_key)
    page = own_key.client("own1").post(
        "/portal/lots/new", data={"csrf_token": own_key.csrf("own1"), **_new_lot_form("BAD1")}
    )
    answer = own_key.client("own1").post(
        sign_action(page), data={"csrf_token": own_key.csrf("own1"), "signatures": signatures}
    )
    assert 400 <= answer.status_code < 500, answer.get_data(as_text=True)
    assert _log_size(own_key) == before


def test_a_browser_signed_action_lands_where_the_server_signed_one_would(own_key):
    """Commission through the browser flow: the user ends on the new lot's page
    with the same message, and the prepared action is gone (no second use)."""
    response = own_key.post("own1", "/portal/lots/new", _new_lot_form("OWN9"))
    assert response.status_code == 303
    lot = own_key.world.store.lot_by_uri("https://id.gs1.org/01/09506000134352/10/OWN9")
    assert lot is not None and response.headers["Location"].endswith(f"/portal/lots/{lot.id}")
    page = own_key.client("own1").get(response.headers["Location"]).get_data(as_text=True)
    assert "Lot registered" in page
    entries = [e.outcome for e in own_key.accounts.audit_entries(limit=5)]
    assert "ok" in entries and any(o.startswith("prepared") for o in entries)


def test_two_actions_prepared_before_either_is_signed_both_go_in(own_key):
    client, key = own_key.client("own1"), own_key.world.keys["ownfarm"]
    pages = [
        client.post(
            "/portal/lots/new", data={"csrf_token": own_key.csrf("own1"), **_new_lot_form(lot)}
        )
        for lot in ("TWO1", "TWO2")
    ]
    seqs = [unsigned_envelopes(page)[0]["seq"] for page in pages]
    assert seqs[0] != seqs[1]
    for page in reversed(pages):  # signed in the other order
        (envelope,) = unsigned_envelopes(page)
        signatures = json.dumps([browser_signature(key, envelope)])
        done = client.post(
            sign_action(page), data={"csrf_token": own_key.csrf("own1"), "signatures": signatures}
        )
        assert done.status_code == 303, done.get_data(as_text=True)
    for lot in ("TWO1", "TWO2"):
        assert own_key.world.store.lot_by_uri(f"https://id.gs1.org/01/09506000134352/10/{lot}")
