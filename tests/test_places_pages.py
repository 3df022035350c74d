"""The scan page, the portal's lot page and `provenance trace` show a party's
PGLN and a place's name, address and GLN in plain words (docs/protocol.md §13),
for a location cited by GLN alone too; in Chinese as well."""

from __future__ import annotations

import html

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
