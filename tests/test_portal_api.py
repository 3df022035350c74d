"""The JSON API end to end against a real ledger file: every action with a
bearer token, client-signed envelopes, and errors as JSON with reasons."""

from __future__ import annotations

import hashlib
import io

from support.world import GTIN, LOT, PREFIXES, at

from provenance.core import gs1


def test_me_and_parties(portal):
    token = portal.token("farm")
    me = portal.api("GET", "/api/v1/me", token).json
    assert me == {
        "actor": "token 1",
        "role": "producer",
        "scope": "write",
        "party": {
            "name": "farm",
            "did": portal.world.did("farm"),
            "gs1_company_prefixes": sorted(PREFIXES),
        },
    }
    parties = portal.api("GET", "/api/v1/parties", token).json["parties"]
    assert {p["name"] for p in parties} >= {"farm", "carrier", "regulator"}


def test_commission_and_read_back(portal):
    token = portal.token("farm")
    body = {
        "gtin": GTIN,
        "lot": "API1",
        "product": "Kale",
        "category": "food",
        "expiry": "2026-12-01",
        "quantity": {"value": 40, "unit": "KGM"},
        "origin": {"name": "North field", "country": "KE"},
    }
    response = portal.api("POST", "/api/v1/lots", token, json=body)
    assert response.status_code == 201, response.json
    uri = gs1.lot_uri(GTIN, "API1")
    assert response.json["lot"] == uri
    assert response.json["events"][0]["status"] == "accepted"
    again = portal.api("POST", "/api/v1/lots", token, json=body)
    assert again.status_code == 409 and again.json["reason"] == "lot-exists"
    lot = portal.api("GET", f"/api/v1/lots/lookup?uri={uri}", token).json
    assert (lot["lot"], lot["product"], lot["state"]) == (uri, "Kale", "ok")
    assert lot["custody"][0]["kind"] == "commission"
    listing = portal.api("GET", "/api/v1/lots", token).json
    assert listing["total"] == 2 and listing["lots"][0]["lot"] == uri


def test_bad_bodies_are_400s_that_name_the_field(portal):
    token = portal.token("farm")
    cases = [
        ({"gtin": GTIN, "lot": "A"}, "product"),
        ({"gtin": "123", "lot": "A", "product": "K"}, "gtin"),
        ({"gtin": GTIN, "lot": "A", "product": "K", "expiry": "tomorrow"}, "expiry"),
    ]
    for body, field in cases:
        response = portal.api("POST", "/api/v1/lots", token, json=body)
        assert response.status_code == 400, body
        assert field in response.json["detail"]
    duplicate_keys = b'{"gtin": "1", "gtin": "2"}'
    response = portal.api(
        "POST", "/api/v1/lots", token, data=duplicate_keys, content_type="application/json"
    )
    assert response.status_code == 400 and "duplicate" in response.json["detail"]
    response = portal.api("POST", "/api/v1/lots", token, data=b"[1]")
    assert response.status_code == 400 and "JSON object" in response.json["detail"]


def test_ship_and_receive(portal):
    world = portal.world
    farm, carrier, store = (portal.token(p) for p in ("farm", "carrier", "store"))
    response = portal.api(
        "POST",
        "/api/v1/shipments",
        farm,
        json={"batches": [LOT], "to": "carrier", "location": {"name": "Farm gate"}},
    )
    assert response.status_code == 201, response.json
    shipment = response.json["shipment"]
    incoming = portal.api("GET", "/api/v1/shipments", carrier).json["incoming"]
    assert incoming == [
        {
            "shipment": shipment,
            "from": "farm",
            "to": "carrier",
            "lots": [LOT],
            "time": incoming[0]["time"],
            "location": {"name": "Farm gate"},
        }
    ]
    refused = portal.api("POST", f"/api/v1/shipments/{shipment}/receive", store, json={})
    assert refused.status_code == 403 and refused.json["reason"] == "unauthorised"
    done = portal.api(
        "POST", f"/api/v1/shipments/{shipment}/receive", carrier, json={"condition": "ok"}
    )
    assert done.status_code == 201, done.json
    lot = world.store.lot_by_uri(LOT)
    assert lot.custodian == world.store.identity_by_did(world.did("carrier")).id
    missing = portal.api("POST", f"/api/v1/shipments/{'0' * 64}/receive", carrier)
    assert missing.status_code == 404


def test_a_recalled_lot_is_sent_back_only_as_a_recall_return(portal):
    world = portal.world
    world.ok("regulator", "recall", [LOT], {"reason": "Listeria", "class": "I"})
    farm = portal.token("farm")
    body = {"batches": [LOT], "to": "packer"}
    refused = portal.api("POST", "/api/v1/shipments", farm, json=body)
    assert refused.status_code == 409 and refused.json["reason"] == "recalled"
    assert "recall-return" in refused.json["detail"]
    wrong = portal.api("POST", "/api/v1/shipments", farm, json={**body, "purpose": "sale"})
    assert wrong.status_code == 400 and "purpose" in wrong.json["detail"]
    back = portal.api("POST", "/api/v1/shipments", farm, json={**body, "purpose": "recall-return"})
    assert back.status_code == 201, back.json
    shipped = world.store.find_event(bytes.fromhex(back.json["shipment"])).envelope
    assert shipped.data["purpose"] == "recall-return"


def test_transform(portal):
    world = portal.world
    world.ship_and_receive("farm", "packer", [LOT], 2)
    token = portal.token("packer")
    body = {
        "inputs": [{"batch": LOT, "quantity": {"value": 10, "unit": "KGM"}}],
        "outputs": [
            {
                "batch": gs1.lot_uri(GTIN, "JAR1"),
                "product": "Kale pesto",
                "quantity": {"value": 30, "unit": "EA"},
            }
        ],
        "location": {"name": "Packhouse"},
    }
    response = portal.api("POST", "/api/v1/transforms", token, json=body)
    assert response.status_code == 201, response.json
    made = world.store.lot_by_uri(gs1.lot_uri(GTIN, "JAR1"))
    assert made.product == "Kale pesto"
    farm = portal.token("farm")
    refused = portal.api("POST", "/api/v1/transforms", farm, json=body)
    assert refused.status_code == 403  # the farm no longer holds LOT42


def test_documents(portal):
    token = portal.token("farm")
    data = b"lab,result\nlisteria,absent\n"
    response = portal.api(
        "POST",
        "/api/v1/documents",
        token,
        data={"file": (io.BytesIO(data), "lab.csv"), "batches": LOT, "result": "pass"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.json
    digest = hashlib.sha256(data).hexdigest()
    assert response.json["document"] == {
        "sha256": digest,
        "name": "lab.csv",
        "media_type": "text/csv",
        "size": len(data),
    }
    download = portal.api("GET", f"/api/v1/documents/{digest}", token)
    assert download.status_code == 200 and download.data == data
    other = portal.api("GET", f"/api/v1/documents/{digest}", portal.token("store"))
    assert other.status_code == 403


def test_labels(portal):
    token = portal.token("farm")
    png = portal.api("GET", f"/api/v1/lots/label?uri={LOT}", token)
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")
    pdf = portal.api("GET", f"/api/v1/lots/label?uri={LOT}&format=pdf&count=2", token)
    assert pdf.data.startswith(b"%PDF-")


def test_client_signed_envelopes(portal):
    world = portal.world
    token = portal.token("farm", key=False)  # the server needs no key for these
    inspect = world.sign("farm", "inspect", [LOT], {"result": "pass"}, time=at(3))
    readings = [world.reading(3 + k / 4, 4.0).to_json() for k in range(3)]  # the farm's probe
    response = portal.api("POST", "/api/v1/events", token, json=[inspect.to_json(), *readings])
    assert response.status_code == 201, response.json
    assert [r["status"] for r in response.json["results"]] == ["accepted"] * 4
    again = portal.api("POST", "/api/v1/events", token, json=inspect.to_json())
    assert again.status_code == 201 and again.json["results"][0]["status"] == "duplicate"
    # another party's envelope is refused before the ledger sees it
    other = world.sign("packer", "inspect", [LOT], {"result": "fail"}, time=at(3))
    response = portal.api("POST", "/api/v1/events", token, json=other.to_json())
    assert response.status_code == 403 and response.json["reason"] == "other-party"
    # a bad signature: refused by the ledger, with the reason per item
    forged = {**world.sign("farm", "inspect", [LOT], {"result": "pass"}).to_json()}
    forged["data"] = {"result": "fail"}
    response = portal.api("POST", "/api/v1/events", token, json=forged)
    assert response.status_code == 422
    assert response.json["results"][0]["reason"] == "bad-signature"
    # all or nothing by default; ?atomic=false keeps the good ones
    good = world.sign("farm", "inspect", [LOT], {"result": "pass"}, time=at(4))
    batch = [good.to_json(), forged]
    response = portal.api("POST", "/api/v1/events", token, json=batch)
    assert [r["status"] for r in response.json["results"]] == ["aborted", "rejected"]
    response = portal.api("POST", "/api/v1/events?atomic=false", token, json=batch)
    assert [r["status"] for r in response.json["results"]] == ["accepted", "rejected"]


def test_errors_are_json_with_reasons(portal):
    token = portal.token("farm")
    response = portal.api("GET", "/api/v1/nowhere", token)
    assert response.status_code == 404 and response.json["reason"] == "route"
    response = portal.api("DELETE", "/api/v1/lots", token)
    assert response.status_code == 405 and response.is_json
    response = portal.api("GET", "/api/v1/lots/lookup?uri=https://id.gs1.org/01/1/10/X", token)
    assert response.status_code == 400 and response.is_json
    unknown = gs1.lot_uri(GTIN, "NOPE")
    assert portal.api("GET", f"/api/v1/lots/lookup?uri={unknown}", token).status_code == 404
    assert portal.api("GET", f"/api/v1/lots/lookup?uri={LOT}", portal.token("store")).json[
        "reason"
    ] == ("other-party")
