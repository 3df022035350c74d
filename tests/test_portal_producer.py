"""The producer portal end to end against a real ledger file: sign in, see own
lots and their alerts, register a lot, print labels, ship and have the receiver
confirm, transform, attach a certificate, API tokens."""

from __future__ import annotations

import hashlib
import io

from support.portal import make_app
from support.world import GTIN, LOT, at

from provenance.core import gs1
from provenance.ledger.audit import verify_ledger


def text(response) -> str:
    return response.get_data(as_text=True)


def chain(world, uri):
    found = world.store.chain_by_subject(uri)
    return [stored.envelope for stored in world.store.chain_events(found[0])]


def test_sign_in_and_out(portal):
    client = portal.app.test_client()
    response = client.get("/portal/")
    assert response.status_code == 302 and "/portal/login" in response.headers["Location"]
    client = portal.client("farm1")
    page = client.get("/portal/")
    assert page.status_code == 200
    assert "Kale" in text(page) and "LOT42" in text(page)
    assert "Signed in as farm1 · producer · farm" in text(page)
    entries = portal.accounts.audit_entries(action="login")
    assert entries[0].actor == "user farm1" and entries[0].outcome == "ok"


def test_wrong_password_says_so_without_naming_which(portal):
    client = portal.app.test_client()
    page = client.get("/portal/login")
    from support.portal import csrf_of

    for name in ("farm1", "nobody"):
        response = client.post(
            "/portal/login",
            data={"name": name, "password": "wrong password!", "csrf_token": csrf_of(page)},
        )
        assert response.status_code == 401
        assert "Wrong user name or password." in text(response)


def test_register_a_lot(portal):
    form = {
        "gtin": "9506000134352",  # GTIN-13: stored as GTIN-14
        "lot": "SPIN/7",
        "product": "Baby spinach",
        "category": "food",
        "profile": "chilled",
        "expiry": "2026-12-01",
        "quantity": "120.5",
        "unit": "kgm",
        "origin": "North field",
        "country": "ke",
    }
    response = portal.post("farm1", "/portal/lots/new", form)
    assert response.status_code == 303
    uri = gs1.lot_uri(GTIN, "SPIN/7")
    lot = portal.world.store.lot_by_uri(uri)
    assert lot.product == "Baby spinach" and lot.expiry == "2026-12-01"
    [commission] = chain(portal.world, uri)
    assert commission.signer == portal.world.did("farm")
    assert commission.data["quantity"] == {"value": 120.5, "unit": "KGM"}
    assert commission.data["origin"] == {"name": "North field", "country": "KE"}
    page = portal.client("farm1").get(response.headers["Location"])
    assert "Lot registered" in text(page) and "Baby spinach" in text(page)
    again = portal.post("farm1", "/portal/lots/new", form)
    assert again.status_code == 409
    assert "already commissioned" in text(again)
    bad = portal.post("farm1", "/portal/lots/new", {**form, "gtin": "9506000134353"})
    assert bad.status_code == 400 and "check digit" in text(bad)


def test_own_lots_show_their_alerts(portal):
    world = portal.world
    world.ledger.append([world.reading(1 + k / 4, 15.0) for k in range(24)])  # 6 h too warm
    page = text(portal.client("farm1").get("/portal/"))
    assert "badge-excursion" in page
    data = {"reason": "Listeria found", "class": "I"}
    world.ok("regulator", "recall", [LOT], data, time=at(20))
    page = text(portal.client("farm1").get("/portal/"))
    assert "badge-recalled" in page and "Listeria found" in page
    lots = portal.api("GET", "/api/v1/lots", portal.token("farm")).json["lots"]
    assert lots[0]["state"] == "recalled" and "excursion" in " ".join(lots[0]["alerts"])


def test_labels(portal):
    lot_id = portal.lot_id(LOT)
    client = portal.client("farm1")
    png = client.get(f"/portal/lots/{lot_id}/label.png")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data.startswith(b"\x89PNG")
    pdf = client.get(f"/portal/lots/{lot_id}/label.pdf?count=3")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-")
    assert "attachment" in pdf.headers["Content-Disposition"]
    too_many = client.get(f"/portal/lots/{lot_id}/label.pdf?count=900")
    assert too_many.status_code == 400 and "count" in text(too_many)
    assert portal.client("packer1").get(f"/portal/lots/{lot_id}/label.png").status_code == 403
    portal.world.ok("regulator", "recall", [LOT], {"reason": "x", "class": "II"}, time=at(2))
    refused = client.get(f"/portal/lots/{lot_id}/label.png")
    assert refused.status_code == 409 and "recalled" in text(refused)


def test_a_recalled_lot_page_offers_to_send_it_back(portal):
    world = portal.world
    world.ok("regulator", "recall", [LOT], {"reason": "x", "class": "I"}, time=at(2))
    lot_id = portal.lot_id(LOT)
    page = text(portal.client("farm1").get(f"/portal/lots/{lot_id}"))
    assert "Send back under the recall" in page and "Ship to another party" not in page
    assert 'name="purpose" value="recall-return"' in page
    refused = portal.post("farm1", f"/portal/lots/{lot_id}/ship", {"to": world.did("dc")})
    assert refused.status_code == 409 and "recall-return" in text(refused)
    back = {"to": world.did("packer"), "purpose": "recall-return"}
    response = portal.post("farm1", f"/portal/lots/{lot_id}/ship", back)
    assert response.status_code == 303
    ship = chain(world, LOT)[-1]
    assert (ship.kind, ship.data.get("purpose")) == ("ship", "recall-return")


def test_ship_then_the_receiver_confirms(portal):
    world = portal.world
    store = world.store
    farm = store.identity_by_did(world.did("farm"))
    carrier = store.identity_by_did(world.did("carrier"))
    lot_id = portal.lot_id(LOT)
    page = text(portal.client("farm1").get(f"/portal/lots/{lot_id}"))
    assert "Ship to another party" in page
    response = portal.post(
        "farm1",
        f"/portal/lots/{lot_id}/ship",
        {"to": world.did("carrier"), "location": "Farm gate", "country": "KE"},
    )
    assert response.status_code == 303
    assert store.lot_by_uri(LOT).custodian == farm.id  # custody moves only on receive
    # the receiver sees it waiting, and the lot page offers to confirm
    shipments = text(portal.client("carrier1").get("/portal/shipments"))
    assert "From farm" in shipments and "Confirm receipt" in shipments
    assert "Confirm receipt" in text(portal.client("carrier1").get(f"/portal/lots/{lot_id}"))
    outgoing = text(portal.client("farm1").get("/portal/shipments"))
    assert "To carrier" in outgoing
    ship = chain(world, LOT)[-1]
    response = portal.post(
        "carrier1", f"/portal/shipments/{ship.event_id}/receive", {"condition": "cold, sealed"}
    )
    assert response.status_code == 303
    assert store.lot_by_uri(LOT).custodian == carrier.id
    receive = chain(world, LOT)[-1]
    assert (ship.kind, ship.signer, ship.data["to"]) == ("ship", farm.did, carrier.did)
    assert (receive.kind, receive.signer) == ("receive", carrier.did)
    assert receive.data == {"shipment": ship.event_id, "condition": "cold, sealed"}
    again = portal.post("carrier1", f"/portal/shipments/{ship.event_id}/receive")
    assert again.status_code == 409
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, report.problems


def test_transform(portal):
    world = portal.world
    world.ship_and_receive("farm", "packer", [LOT], 2)
    form = {
        "in0_batch": LOT,
        "in0_quantity": "100",
        "in0_unit": "KGM",
        "out0_gtin": GTIN,
        "out0_lot": "BAG1",
        "out0_product": "Kale, bagged",
        "out0_quantity": "400",
        "out0_unit": "EA",
        "out0_expiry": "2026-10-30",
        "out1_gtin": GTIN,
        "out1_lot": "BAG2",
        "out1_product": "Kale crisps",
        "out1_quantity": "50",
        "out1_unit": "EA",
    }
    response = portal.post("packer1", "/portal/transform", form)
    assert response.status_code == 303, text(response)
    packer = world.store.identity_by_did(world.did("packer"))
    for lot in ("BAG1", "BAG2"):
        made = world.store.lot_by_uri(gs1.lot_uri(GTIN, lot))
        assert made.custodian == packer.id
    transform = chain(world, LOT)[-1]
    assert transform.kind == "transform" and transform.signer == packer.did
    assert transform.data["inputs"] == [{"batch": LOT, "quantity": {"value": 100, "unit": "KGM"}}]
    assert transform.data["outputs"][0]["expiry"] == "2026-10-30"
    assert "Kale, bagged" in text(portal.client("packer1").get("/portal/"))
    world.ok(
        "farm",
        "commission",
        [gs1.lot_uri(GTIN, "K2")],
        {"gtin": GTIN, "lot": "K2", "product": "Kale"},
    )
    refused = portal.post(
        "packer1",
        "/portal/transform",
        {**form, "in0_batch": gs1.lot_uri(GTIN, "K2"), "out0_lot": "BAG3", "out1_lot": "BAG4"},
    )
    assert refused.status_code == 403  # the packer does not hold K2
    assert "does not hold" in text(refused)


def test_transform_form_lists_only_held_lots(portal):
    page = text(portal.client("packer1").get("/portal/transform"))
    assert "LOT42" not in page
    assert "LOT42" in text(portal.client("farm1").get("/portal/transform"))


def test_attach_a_certificate(portal):
    lot_id = portal.lot_id(LOT)
    pdf = b"%PDF-1.4\n% organic certificate\n"
    digest = hashlib.sha256(pdf).hexdigest()
    response = portal.post(
        "farm1",
        f"/portal/lots/{lot_id}/documents",
        {"file": (io.BytesIO(pdf), "organic.pdf"), "result": "pass", "notes": "annual audit"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303, text(response)
    stored = portal.tmp / "accounts" / "documents" / digest[:2] / digest
    assert stored.read_bytes() == pdf
    inspect = chain(portal.world, LOT)[-1]
    assert inspect.kind == "inspect" and inspect.signer == portal.world.did("farm")
    assert inspect.data == {
        "result": "pass",
        "document": {"sha256": digest, "name": "organic.pdf", "media_type": "application/pdf"},
        "notes": "annual audit",
    }
    page = text(portal.client("farm1").get(f"/portal/lots/{lot_id}"))
    assert "organic.pdf" in page and digest in page
    download = portal.client("farm1").get(f"/portal/documents/{digest}")
    assert download.status_code == 200 and download.data == pdf
    assert download.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert download.headers["Content-Disposition"] == "attachment; filename*=UTF-8''organic.pdf"
    assert portal.client("reg1").get(f"/portal/documents/{digest}").status_code == 200
    assert portal.client("store1").get(f"/portal/documents/{digest}").status_code == 403
    assert portal.client("farm1").get(f"/portal/documents/{'0' * 64}").status_code == 404


def test_uploads_are_limited_in_size_and_type(file_world, tmp_path):
    from support.portal import Portal

    app = make_app(file_world, tmp_path, DOCUMENT_MAX_BYTES=1000)
    portal = Portal(file_world, app, tmp_path)
    portal.user("farm1", "farm")
    lot_id = portal.lot_id(LOT)
    url = f"/portal/lots/{lot_id}/documents"
    cases = [
        (b"%PDF-" + b"x" * 5000, "big.pdf", 413),
        (b"%PDF-" + b"x" * 200_000, "huge.pdf", 413),  # beyond the request limit itself
        (b"MZ\x90\x00", "tool.exe", 415),
        (b"<html><script>", "page.pdf", 415),
    ]
    for data, name, status in cases:
        response = portal.post(
            "farm1",
            url,
            {"file": (io.BytesIO(data), name), "result": "pass"},
            content_type="multipart/form-data",
        )
        assert response.status_code == status, (name, text(response))
    assert chain(file_world, LOT)[-1].kind == "attach"  # nothing was signed
    documents = tmp_path / "accounts" / "documents"
    assert not documents.exists() or not any(p.is_file() for p in documents.rglob("*"))


def test_api_tokens_are_shown_once(portal):
    client = portal.client("farm1")
    form = {"label": "ERP export", "scope": "write", "csrf_token": portal.csrf("farm1")}
    page = text(client.post("/portal/tokens", data=form))
    secret = page.split('class="mono secret">', 1)[1].split("<", 1)[0]
    assert secret.startswith("pvt_")
    assert portal.api("GET", "/api/v1/me", secret).json["party"]["name"] == "farm"
    listing = text(client.get("/portal/tokens"))
    assert "ERP export" in listing and secret not in listing
    response = portal.post("farm1", "/portal/tokens/1/revoke")
    assert response.status_code == 303
    assert portal.api("GET", "/api/v1/me", secret).status_code == 401


def test_password_change(portal):
    response = portal.post(
        "farm1",
        "/portal/password",
        {"current": "wrong password!", "new": "a brand new secret", "repeat": "a brand new secret"},
    )
    assert response.status_code == 403
    response = portal.post(
        "farm1",
        "/portal/password",
        {
            "current": "correct horse battery",
            "new": "a brand new secret",
            "repeat": "a brand new secret",
        },
    )
    assert response.status_code == 303
    assert portal.client("farm1").get("/portal/").status_code == 200  # this session goes on
    assert portal.accounts.authenticate("farm1", "a brand new secret").name == "farm1"


def test_server_without_the_log_key_is_read_only(file_world, tmp_path):
    from support.portal import Portal

    app = make_app(file_world, tmp_path, KEYS=str(tmp_path / "nokeys"))
    portal = Portal(file_world, app, tmp_path)
    portal.user("farm1", "farm")
    assert portal.client("farm1").get("/portal/").status_code == 200
    response = portal.post("farm1", "/portal/lots/new", {"gtin": GTIN, "lot": "R1", "product": "K"})
    assert response.status_code == 503
    assert "no log key" in text(response)


def test_party_without_a_server_held_key_cannot_sign(file_world, tmp_path):
    from support.portal import Portal

    portal = Portal(file_world, make_app(file_world, tmp_path), tmp_path)
    portal.user("farm1", "farm", key=False)
    assert "holds no signing key" in text(portal.client("farm1").get("/portal/"))
    response = portal.post("farm1", "/portal/lots/new", {"gtin": GTIN, "lot": "R1", "product": "K"})
    assert response.status_code == 503
    assert "key-import" in text(response)
