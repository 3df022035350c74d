"""The scan page, the portal's lot page and `provenance trace` show a party's
PGLN and a place's name, address and GLN in plain words (docs/protocol.md §15),
for a location cited by GLN alone too; in Chinese as well."""

from __future__ import annotations

import html
import re

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.world import LOT, at

from provenance.cli.trace import _store_places, render
from provenance.core import gs1
from provenance.core.signing import did_of
from provenance.ledger.lineage import trace

GLN = "9506000000008"
PGLN = "9506000000015"
WORDS = "Riverside packhouse, 1 Mill Lane, Nakuru, Nakuru County 20100, KE"


def _journey(world) -> None:
    """farm registers its packhouse and ships LOT from it, citing the GLN alone, to
    Mill Ltd (a party with a PGLN), which receives it there."""
    key = Ed25519PrivateKey.generate()
    world.keys["mill"] = key
    address = {"street": "9 Quay", "city": "Mombasa", "country": "KE"}
    enrol = {"subject": did_of(key), "type": "party", "name": "Mill Ltd", "role": "processor"}
    world.ok("registrar", "enrol", None, {**enrol, "pgln": PGLN, "address": address})
    place = {
        "gln": GLN,
        "name": "Riverside packhouse",
        "address": {
            "street": "1 Mill Lane",
            "city": "Nakuru",
            "region": "Nakuru County",
            "postal_code": "20100",
            "country": "KE",
        },
    }
    world.ok("farm", "place", None, place)
    shipped = world.ok(
        "farm", "ship", [LOT], {"to": did_of(key), "location": {"gln": GLN}}, time=at(2)
    )
    world.ok("mill", "receive", [LOT], {"shipment": shipped.event_id}, time=at(3))


def test_the_scan_page_shows_the_place_and_the_holder_s_pgln(portal):
    _journey(portal.world)
    client = portal.app.test_client()
    body = html.unescape(client.get(gs1.lot_path(LOT)).get_data(as_text=True))
    assert f"{WORDS} · GLN {GLN}" in body
    assert f"Mill Ltd · GLN {PGLN}" in body  # held now by
    zh = html.unescape(client.get(gs1.lot_path(LOT) + "?lang=zh").get_data(as_text=True))
    assert f"{WORDS} · 全球位置码 GLN {GLN}" in zh


def test_the_portal_lot_page_shows_them_too(portal):
    _journey(portal.world)
    page = portal.client("farm1").get(f"/portal/lots/{portal.lot_id(LOT)}")
    assert page.status_code == 200
    body = html.unescape(page.get_data(as_text=True))
    assert f"{WORDS} · GLN {GLN}" in body
    assert f"Mill Ltd · GLN {PGLN}" in body


def test_trace_shows_them(world):
    _journey(world)
    lines = list(render(trace(world.store, LOT, "both"), _store_places(world.store)))
    assert f"held by Mill Ltd (processor), GLN {PGLN}" in lines[0]
    assert f"last seen at {WORDS} (GLN {GLN})" in lines[0]


def test_the_portal_ship_form_takes_a_registered_place_s_gln(portal):
    """The form's "Place" may be the GLN of a registered place: the ship cites it
    as {"gln"} alone; a wrong check digit is said by the place field, nothing signed."""
    world = portal.world
    world.ok("farm", "place", None, {"gln": GLN, "name": "Riverside packhouse"})
    lot_id = portal.lot_id(LOT)
    size = world.store.log_size()
    bad = portal.post(
        "farm1",
        f"/portal/lots/{lot_id}/ship",
        {"to": world.did("carrier"), "location": "9506000000001"},
    )
    assert bad.status_code == 400
    body = html.unescape(bad.get_data(as_text=True))
    alerts = re.findall(r'role="alert">[^<]*', body)
    assert "Check the GLN: is not a GLN: its check digit is 1, expected 8" in body, alerts
    assert world.store.log_size() == size
    good = portal.post(
        "farm1",
        f"/portal/lots/{lot_id}/ship",
        {"to": world.did("carrier"), "location": "950600 0000008"},
    )
    assert good.status_code == 303
    ship = world.store.event_at(world.store.log_size() - 1).envelope
    assert (ship.kind, ship.data["location"]) == ("ship", {"gln": GLN})
    page = html.unescape(
        portal.client("farm1").get(f"/portal/lots/{lot_id}").get_data(as_text=True)
    )
    assert f"Riverside packhouse · GLN {GLN}" in page
