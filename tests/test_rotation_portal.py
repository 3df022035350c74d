"""A party whose browser key is lost is recovered through the registrar and a
regulator (docs/portal.md, "Keys in the browser"): its portal account, tokens
and documents follow the rotation, its new browser key signs, the old one is
refused."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.portal import (
    Portal,
    browser_signature,
    make_app,
    sign_action,
    unsigned_envelopes,
)
from support.world import at

from provenance.core.rotation import approval, statement


@pytest.fixture
def own_key(file_world, tmp_path) -> Portal:
    world = file_world
    world.keys["ownfarm"] = Ed25519PrivateKey.generate()
    world.ok(
        "registrar",
        "enrol",
        None,
        {
            "subject": world.did("ownfarm"),
            "type": "party",
            "name": "Own Farm",
            "role": "producer",
            "gs1_company_prefixes": ["9506000"],
            "custodial": False,
        },
    )
    portal = Portal(world, make_app(world, tmp_path), tmp_path)
    portal.user("own1", "ownfarm", key=False)
    return portal


def _new_lot(portal: Portal, lot: str):
    return portal.client("own1").post(
        "/portal/lots/new",
        data={
            "csrf_token": portal.csrf("own1"),
            "gtin": "09506000134352",
            "lot": lot,
            "product": "Kale",
        },
    )


def _sign(portal: Portal, page, key):
    (envelope,) = unsigned_envelopes(page)
    return envelope, portal.client("own1").post(
        sign_action(page),
        data={
            "csrf_token": portal.csrf("own1"),
            "signatures": json.dumps([browser_signature(key, envelope)]),
        },
    )


def test_a_lost_browser_key_is_recovered_and_the_account_follows(own_key):
    world = own_key.world
    old = world.did("ownfarm")
    token = own_key.token("ownfarm", key=False)
    # The browser (and its backup) are lost: a new browser key, approved by the
    # regulator on its machine, put in the log by the registrar.
    world.keys["ownfarm2"] = new_key = Ed25519PrivateKey.generate()
    data = {
        "subject": old,
        "key": world.did("ownfarm2"),
        "reason": "browser lost",
        "custodial": False,
    }
    terms = statement(old, data["key"], at(2), "browser lost")
    data["approval"] = approval(world.did("regulator"), world.keys["regulator"].sign(terms))
    world.ok("registrar", "rotate", None, data, time=at(2))

    envelope, done = _sign(own_key, _new_lot(own_key, "REC1"), new_key)
    assert envelope["signer"] == world.did("ownfarm2")
    assert done.status_code == 303, done.get_data(as_text=True)
    assert own_key.accounts.user("own1").party_did == world.did("ownfarm2")

    # The old key, if it turned up in someone's hands, is refused.
    page = _new_lot(own_key, "REC2")
    (envelope,) = unsigned_envelopes(page)
    stolen = own_key.client("own1").post(
        sign_action(page),
        data={
            "csrf_token": own_key.csrf("own1"),
            "signatures": json.dumps([browser_signature(world.keys["ownfarm"], envelope)]),
        },
    )
    assert stolen.status_code == 400
    # An API token made before the rotation acts for the new key too.
    me = own_key.api("GET", "/api/v1/me", token)
    assert me.status_code == 200 and me.json["party"]["did"] == world.did("ownfarm2")
    assert [t.party_did for t in own_key.accounts.tokens()] == [world.did("ownfarm2")]
