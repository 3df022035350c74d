"""What each viewer sees of a private field (docs/protocol.md §14): the public
scan page, its JSON twin and the proof bundle say it is kept private and
still verify, never the value; the regulator's portal lot view shows the value
checked against the signed digest; a party sees it only when granted."""

from __future__ import annotations

import json
import re

import pytest
from support.world import LOT, at

from provenance.core import gs1
from provenance.core.bundle import verify_bundle
from provenance.core.signing import sign_disclosure_grant, sign_private
from provenance.ledger.disclosures import grant, withdraw
from provenance.web import create_app

PATH = LOT.removeprefix(gs1.DEFAULT_BASE)
SECRET = "Naivasha pack-house 3"
PRIVATE_NOTE = "1 detail kept private by the producer"
VERIFIED = "verified against the signed digest"


def private_ship(world) -> str:
    seq = world.ledger.next_seq(world.did("farm"))
    world.seqs["farm"] = seq + 1
    made = sign_private(
        world.keys["farm"],
        kind="ship",
        seq=seq,
        time=at(2),
        data={"to": world.did("dc"), "location": {"name": SECRET, "lat": -0.72, "lon": 36.43}},
        lots=[LOT],
        private=["location"],
    )
    (result,) = world.ledger.append([made])
    assert result.status == "accepted", result
    return result.event_id


def text_of(response) -> str:
    body = response.get_data(as_text=True)
    body = body.split("<main>", 1)[-1].split("</main>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


@pytest.fixture
def client(file_world):
    private_ship(file_world)
    app = create_app(
        {
            "DATABASE": str(file_world.store.path),
            "CLOCK": lambda: file_world.now,
            "LOG_PUBLIC_KEY": file_world.log_public_key,
            "TESTING": True,
        }
    )
    return app.test_client()


def test_the_public_page_says_kept_private_and_never_shows_the_value(client):
    page = client.get(PATH)
    assert page.status_code == 200
    text = text_of(page)
    assert PRIVATE_NOTE in text
    assert SECRET not in page.get_data(as_text=True)
    assert "signatures valid" in text and "signature does not verify" not in text
    zh = client.get(PATH + "?lang=zh").get_data(as_text=True)
    assert "1 项信息由生产者保密" in zh and SECRET not in zh


def test_the_json_twin_and_the_bundle_carry_only_the_digest_and_verify(client, file_world):
    twin = client.get(PATH, headers={"Accept": "application/json"})
    assert twin.status_code == 200 and SECRET not in twin.get_data(as_text=True)
    response = client.get(f"/bundle{PATH}")
    assert response.status_code == 200
    raw = response.get_data(as_text=True)
    assert SECRET not in raw and '"_sd"' in raw
    report = verify_bundle(json.loads(raw), file_world.log_public_key)
    assert any(envelope.version == 2 for envelope in report.events)


def test_the_regulator_sees_the_value_verified_a_receiver_only_when_granted(portal):
    world = portal.world
    shipment = private_ship(world)
    world.ok("dc", "receive", [LOT], {"shipment": shipment}, time=at(3))
    portal.user("dc1", "dc")
    url = f"/portal/lots/{portal.lot_id(LOT)}"
    regulator = text_of(portal.client("reg1").get(url))
    assert SECRET in regulator and VERIFIED in regulator
    assert PRIVATE_NOTE not in regulator
    farm = text_of(portal.client("farm1").get(url))  # the signer itself
    assert SECRET in farm and VERIFIED in farm
    # the receiver holds the lot and sees its page, but not the farm's private field
    receiver = portal.client("dc1").get(url)
    assert receiver.status_code == 200
    assert SECRET not in receiver.get_data(as_text=True) and PRIVATE_NOTE in text_of(receiver)
    time = at(4)
    signature = sign_disclosure_grant(world.keys["farm"], world.did("dc"), time)
    grant(world.store, world.did("farm"), world.did("dc"), time, signature)
    granted = text_of(portal.client("dc1").get(url))
    assert SECRET in granted and VERIFIED in granted
    assert withdraw(world.store, world.did("farm"), world.did("dc"))
    assert SECRET not in portal.client("dc1").get(url).get_data(as_text=True)


def test_a_disclosure_changed_in_the_database_is_never_shown_as_verified(portal):
    world = portal.world
    event_id = private_ship(world)
    world.store.conn.execute("UPDATE disclosures SET disclosure = 'WyJ4IiwieSIsMV0'")
    world.store.conn.commit()
    page = text_of(portal.client("reg1").get(f"/portal/lots/{portal.lot_id(LOT)}"))
    assert SECRET not in page and VERIFIED not in page and PRIVATE_NOTE in page
    assert event_id


def test_a_grant_must_be_signed_by_the_grantor(file_world):
    from provenance.core.disclosure import DisclosureError

    time = at(3)
    forged = sign_disclosure_grant(file_world.keys["dc"], file_world.did("store"), time)
    with pytest.raises(DisclosureError, match="not signed by the grantor"):
        grant(file_world.store, file_world.did("farm"), file_world.did("store"), time, forged)


def test_the_api_takes_a_v2_envelope_with_its_disclosures(portal):
    world = portal.world
    token = portal.token("farm")
    seq = world.ledger.next_seq(world.did("farm"))
    made = sign_private(
        world.keys["farm"],
        kind="ship",
        seq=seq,
        time=at(2),
        data={"to": world.did("dc"), "location": {"name": SECRET}},
        lots=[LOT],
        private=["location"],
    )
    bare = portal.api("POST", "/api/v1/events", token, json=made.envelope.to_json())
    assert bare.status_code == 422
    assert bare.get_json()["results"][0]["reason"] == "disclosure"
    wrapped = portal.api("POST", "/api/v1/events", token, json=made.to_json())
    assert wrapped.status_code == 201, wrapped.get_json()
    other = dict(made.to_json(), envelope={**made.envelope.to_json(), "signer": world.did("dc")})
    assert portal.api("POST", "/api/v1/events", token, json=other).status_code == 403
