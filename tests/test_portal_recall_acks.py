"""Recall acknowledgements in the portal: the holder's form on the lot page
(signed by the server for a custodial party, in the browser otherwise), the
JSON API, the refusals in the reader's words, and the regulator's recall
report per holder (HTML and JSON)."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.lineage import commission, lot
from support.world import at

RECALL = {"reason": "Listeria", "class": "I", "instructions": "Return to the farm"}


def recalled(portal, holder="store"):
    world = portal.world
    commission(world, "A")
    world.ship_and_receive("farm", holder, [lot("A")], 2)
    recall = world.ok("regulator", "recall", [lot("A")], RECALL, time=at(5))
    return recall.event_id


def acks(portal):
    return portal.world.store.conn.execute(
        "SELECT returned_value, returned_unit, destroyed_value FROM recall_acks ORDER BY event"
    ).fetchall()


def test_a_holder_acknowledges_on_the_lot_page(portal):
    recall = recalled(portal)
    lot_id = portal.lot_id(lot("A"))
    page = portal.client("store1").get(f"/portal/lots/{lot_id}").get_data(as_text=True)
    assert "Acknowledge the recall" in page and recall in page
    answer = portal.post(
        "store1",
        f"/portal/lots/{lot_id}/recall-ack",
        {
            "recall": recall,
            "returned": "30",
            "returned_unit": "KGM",
            "destroyed": "",
            "destroyed_unit": "KGM",
            "notes": "first pallet",
        },
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert acks(portal) == [(30, "KGM", None)]


def test_a_party_that_holds_its_own_key_signs_in_the_browser(portal):
    world = portal.world
    world.keys["ownshop"] = Ed25519PrivateKey.generate()
    enrol = {"subject": world.did("ownshop"), "type": "party", "name": "Own Shop"}
    world.ok("registrar", "enrol", None, {**enrol, "role": "retailer", "custodial": False})
    portal.user("own1", "ownshop", key=False)
    recall = recalled(portal, "ownshop")
    lot_id = portal.lot_id(lot("A"))
    answer = portal.post(  # the sign page comes back; `post` signs as the browser would
        "own1",
        f"/portal/lots/{lot_id}/recall-ack",
        {"recall": recall, "destroyed": "5", "destroyed_unit": "KGM"},
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert acks(portal) == [(None, None, 5)]


def test_refusals_say_why_in_the_page(portal):
    recall = recalled(portal)
    lot_id = portal.lot_id(lot("A"))
    over = portal.post(
        "store1",
        f"/portal/lots/{lot_id}/recall-ack",
        {"recall": recall, "returned": "500", "returned_unit": "KGM"},
    )
    assert over.status_code == 409
    assert "more than the 100 KGM it received" in over.get_data(as_text=True)
    assert "Nothing was signed" in over.get_data(as_text=True)
    unknown = portal.post("store1", f"/portal/lots/{lot_id}/recall-ack", {"recall": "ab" * 32})
    assert unknown.status_code == 409 and "unknown recall" in unknown.get_data(as_text=True)
    garbage = portal.post(
        "store1",
        f"/portal/lots/{lot_id}/recall-ack",
        {"recall": recall, "returned": "lots", "returned_unit": "KGM"},
    )
    assert garbage.status_code == 400
    assert acks(portal) == []


def test_the_api_takes_an_acknowledgement(portal):
    recall = recalled(portal)
    token = portal.token("store")
    body = {"batch": lot("A"), "recall": recall, "returned": {"value": 10, "unit": "KGM"}}
    answer = portal.api("POST", "/api/v1/recalls/ack", token, json=body)
    assert answer.status_code == 201, answer.get_data(as_text=True)
    bad = portal.api("POST", "/api/v1/recalls/ack", token, json={**body, "returned": "ten"})
    assert bad.status_code == 400
    never = portal.token("packer")
    refused = portal.api("POST", "/api/v1/recalls/ack", never, json=body)
    assert refused.status_code in (403, 409) and "not a holder" in refused.get_data(as_text=True)
    assert acks(portal) == [(10, "KGM", None)]


def test_the_regulators_report_shows_each_holder(portal):
    recall = recalled(portal)
    portal.post(
        "store1",
        f"/portal/lots/{portal.lot_id(lot('A'))}/recall-ack",
        {"recall": recall, "returned": "30", "returned_unit": "KGM"},
    )
    lot_id = portal.lot_id(lot("A"))
    page = portal.client("reg1").get(f"/portal/regulator/recalls/{lot_id}").get_data(as_text=True)
    assert "Holders: acknowledgements and what is still out" in page
    assert "1 of 2 holders acknowledged." in page
    token = portal.token("regulator", key=False)
    found = portal.api("GET", f"/api/v1/recalls/report?uri={lot('A')}", token)
    assert found.status_code == 200
    holders = json.loads(found.get_data())["effectiveness"]["lots"][0]["holders"]
    store = next(h for h in holders if h["party"]["name"] == "store")
    assert store["returned"] == {"value": 30, "unit": "KGM"}
    assert store["still_out"] == {"value": 70, "unit": "KGM"}
    farm = next(h for h in holders if h["party"]["name"] == "farm")
    assert farm["acknowledged"] is None
