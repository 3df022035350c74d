"""Quantities and split shipments (docs/protocol.md, "Quantities"): who holds
how much of a lot, what a ship, receive, transform and dispense may move,
and old ledgers (no quantities) keeping their meaning. Both engines."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from support.lineage import BEFORE_LINEAGE_LOG_KEY, FIXTURES
from support.pallets import PALLET
from support.world import GTIN, at

from provenance.core.errors import ValidationError
from provenance.core.kinds import validate_data
from provenance.ledger.audit import verify_ledger
from provenance.ledger.holdings_view import holdings
from provenance.store import holdings as store_holdings
from provenance.store.db import Store
from provenance.store.migrations import QUANTITY_RULES_FROM

KALE = f"https://id.gs1.org/01/{GTIN}/10/KALE1"


def q(value: float, unit: str = "KGM") -> dict:
    return {"value": value, "unit": unit}


def lot_quantities(uri: str, value: float, unit: str = "KGM") -> list[dict]:
    return [{"batch": uri, "quantity": q(value, unit)}]


def commission_kale(world, value: float = 1000, unit: str = "KGM") -> None:
    world.ok(
        "farm",
        "commission",
        [KALE],
        {
            "gtin": GTIN,
            "lot": "KALE1",
            "product": "Kale",
            "category": "food",
            "profile": "chilled",
            "quantity": q(value, unit),
        },
        time=at(0),
    )


def ship(world, sender, receiver, value=None, *, uri=KALE, hours=2.0, unit="KGM"):
    data = {"to": world.did(receiver)}
    if value is not None:
        data["quantities"] = lot_quantities(uri, value, unit)
    return world.append(sender, "ship", [uri], data, time=at(hours))


def receive(world, who, shipped, *, uri=KALE, hours=3.0, received=None, damaged=None):
    data = {"shipment": shipped.event_id}
    if received is not None:
        data["quantities"] = lot_quantities(uri, received)
    if damaged is not None:
        data["damaged"] = lot_quantities(uri, damaged)
    return world.append(who, "receive", [uri], data, time=at(hours))


def held_by(world, uri=KALE) -> dict[str, float]:
    """Party name -> what it holds now (held minus nothing: in transit included)."""
    return {h.party.name: h.held for h in holdings(world.store, uri).holders if h.held}


def test_a_lot_splits_across_open_shipments_and_each_holder_knows_its_share(world):
    commission_kale(world)
    to_dc = ship(world, "farm", "dc", 400)
    to_store = ship(world, "farm", "store", 250, hours=2.5)
    assert to_dc.status == to_store.status == "accepted"
    report = holdings(world.store, KALE)
    farm = report.holder("farm")
    assert (farm.held, farm.in_transit) == (1000, 650)
    assert {t.receiver.name: t.quantity for t in farm.shipments} == {"dc": 400, "store": 250}
    assert receive(world, "dc", to_dc).status == "accepted"
    assert receive(world, "store", to_store, received=240, damaged=5).status == "accepted"
    assert held_by(world) == {"farm": 350, "dc": 400, "store": 240}
    report = holdings(world.store, KALE)
    (short,) = [m for m in report.movements if m.receiver.name == "store"]
    assert (short.shipped, short.received, short.damaged, short.shortfall) == (250, 240, 5, 5)
    assert report.unit == "KGM" and report.shortfall == 5 and report.damaged == 5


def test_over_shipping_is_refused_naming_held_in_transit_and_asked(world):
    commission_kale(world)
    assert ship(world, "farm", "dc", 700).status == "accepted"
    refused = ship(world, "farm", "store", 400, hours=2.5)
    assert refused.reason == "quantity"
    for part in ("holds 1000 KGM", "700 KGM in transit", "at most 300 KGM", "asked 400 KGM"):
        assert part in refused.message, refused.message


def test_a_ship_without_quantities_moves_everything_free(world):
    commission_kale(world)
    ship(world, "farm", "dc", 300)
    rest = ship(world, "farm", "store", hours=2.5)
    assert rest.status == "accepted"
    farm = holdings(world.store, KALE).holder("farm")
    assert farm.in_transit == 1000
    nothing = ship(world, "farm", "clinic", hours=2.6)
    assert nothing.reason == "quantity" and "nothing of" in nothing.message


def test_units_must_be_the_lots(world):
    commission_kale(world)
    refused = ship(world, "farm", "dc", 10, unit="LTR")
    assert refused.reason == "quantity" and "counted in KGM, not LTR" in refused.message
    unmeasured = ship(world, "farm", "dc", 1, uri=world.lot)
    assert unmeasured.reason == "quantity" and "without a quantity" in unmeasured.message


def test_a_receipt_counts_at_most_what_was_shipped(world):
    commission_kale(world)
    shipped = ship(world, "farm", "dc", 100)
    refused = receive(world, "dc", shipped, received=90, damaged=20)
    assert refused.reason == "quantity" and "carried 100 KGM" in refused.message
    assert receive(world, "dc", shipped, received=100).status == "accepted"


def test_dispense_and_transform_take_from_the_signers_holding(world):
    commission_kale(world)
    shipped = ship(world, "farm", "store", 100)
    receive(world, "store", shipped)
    too_much = world.append("store", "dispense", [KALE], {"quantity": q(101)}, time=at(4))
    assert too_much.reason == "quantity" and "at most 100 KGM" in too_much.message
    world.ok("store", "dispense", [KALE], {"quantity": q(30)}, time=at(4))
    other_unit = world.append("store", "dispense", [KALE], {"quantity": q(1, "EA")}, time=at(4))
    assert other_unit.reason == "quantity"
    # the farm still holds 900: its transform may use up to that, no more
    salad = f"https://id.gs1.org/01/{GTIN}/10/SALAD1"
    data = {
        "inputs": [{"batch": KALE, "quantity": q(901)}],
        "outputs": [{"batch": salad, "quantity": q(50, "EA"), "product": "Salad"}],
    }
    assert world.append("farm", "transform", [KALE, salad], data, time=at(5)).reason == "quantity"
    data["inputs"][0]["quantity"] = q(900)
    world.ok("farm", "transform", [KALE, salad], data, time=at(5))
    report = holdings(world.store, KALE)
    assert (report.holder("store").held, report.holder("store").dispensed) == (70, 30)
    assert (report.holder("farm").held, report.holder("farm").used) == (0, 900)
    assert held_by(world, salad) == {"farm": 50}


def test_a_party_holding_nothing_is_not_a_custodian(world):
    commission_kale(world)
    shipped = ship(world, "farm", "dc")  # all of it
    receive(world, "dc", shipped)
    refused = world.append("farm", "dispense", [KALE], {"quantity": q(1)}, time=at(4))
    assert refused.reason == "not-custodian" and "dc (1000 KGM)" in refused.message
    attach = world.append("dc", "attach", [KALE], {"device": world.did("probe")}, time=at(4))
    assert attach.status == "accepted"


def test_an_unmeasured_lot_moves_whole_as_before(world):
    """The world's LOT42 has no quantity: one shipment at a time, as before."""
    first = ship(world, "farm", "dc", uri=world.lot)
    assert first.status == "accepted"
    again = ship(world, "farm", "store", uri=world.lot, hours=2.5)
    assert again.reason == "conflict" and "free to ship" in again.message
    receive(world, "dc", first, uri=world.lot)
    assert held_by(world, world.lot) == {"dc": 1}
    assert holdings(world.store, world.lot).unit is None


def test_the_audit_replays_holdings_and_catches_an_edit(world):
    commission_kale(world)
    shipped = ship(world, "farm", "dc", 400)
    receive(world, "dc", shipped, received=390)
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, [str(p) for p in report.problems]
    with world.store.transaction():
        world.store.conn.execute("UPDATE holdings SET held = held + 100 WHERE held > 0")
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert any("holdings table" in str(p) for p in report.problems)


def test_before_the_quantity_rules_an_old_ledger_keeps_its_meaning(world):
    """Events from before 0011 are replayed as accepted: a use in another unit
    takes nothing, more than held is clamped, and the one-open-shipment rule
    of its time applies."""
    with world.store.transaction():
        world.store.set_meta(QUANTITY_RULES_FROM, "1000000")
    world.ledger._forget()
    commission_kale(world, 10)
    world.ok("farm", "dispense", [KALE], {"quantity": q(3, "EA")}, time=at(1))
    world.ok("farm", "dispense", [KALE], {"quantity": q(12)}, time=at(1.5))
    assert held_by(world) == {}
    shipped = ship(world, "farm", "dc", uri=world.lot)
    assert ship(world, "farm", "store", uri=world.lot, hours=2.5).message.endswith(
        "receive it first"
    )
    receive(world, "dc", shipped, uri=world.lot)
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, [str(p) for p in report.problems]


def test_an_existing_ledger_is_backfilled_whole(tmp_path):
    """A ledger from before quantities (tests/fixtures/README.md): each lot is
    held whole by its custodian, and `verify` replays it as it was."""
    path = tmp_path / "ledger.db"
    shutil.copyfile(FIXTURES / "ledger-before-lineage.db", path)
    with sqlite3.connect(path) as old:
        size = old.execute("SELECT count(*) FROM events").fetchone()[0]
    store = Store(path)
    assert store.get_meta(QUANTITY_RULES_FROM) == str(size)
    for lot in store.lots():
        rows = store_holdings.holdings_of(store.conn, lot.id)
        holders = {row.party for row in rows if row.held > 0}
        measure = store_holdings.measure(store.conn, lot.id)
        if not measure.measured:
            assert holders == {lot.custodian}, lot.uri
    report = verify_ledger(store, bytes.fromhex(BEFORE_LINEAGE_LOG_KEY), workers=1)
    assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize(
    "kind, data, field",
    [
        ("ship", {"quantities": [{"batch": KALE, "quantity": q(1)}] * 2}, "data.quantities"),
        ("receive", {"damaged": [{"batch": KALE + "X", "quantity": q(1)}]}, "data.damaged[0]"),
        ("receive", {"quantities": [{"batch": KALE, "quantity": q(-1)}]}, "data.quantities[0]"),
    ],
)
def test_quantities_name_each_of_the_events_lots_once(kind, data, field):
    base = {"to": "did:key:z6Mkf555wuRQpe78sqUZPQN8hSrwW9FYbGBa6kmN6BmusyjB"}
    if kind == "receive":
        base = {"shipment": "ab" * 32}
    with pytest.raises(ValidationError) as caught:
        validate_data(kind, {**base, **data}, (KALE,))
    assert field in str(caught.value)


# --- trace forward and the recall report: who holds how much now


def split_across_two_shops(world) -> None:
    """1000 KGM: 400 to dc (received whole), 250 to store (240 received, 5
    damaged, 5 short), 100 to clinic still in transit: the farm holds 350,
    100 of it on the way."""
    commission_kale(world)
    to_dc = ship(world, "farm", "dc", 400)
    to_store = ship(world, "farm", "store", 250, hours=2.5)
    ship(world, "farm", "clinic", 100, hours=2.6)
    receive(world, "dc", to_dc)
    receive(world, "store", to_store, received=240, damaged=5)


def test_trace_says_who_holds_how_much(tmp_path):
    from click.testing import CliRunner
    from support.world import World

    from provenance.cli.context import Context
    from provenance.cli.trace import command as trace_command

    world = World.create(tmp_path)
    split_across_two_shops(world)
    context = Context(str(world.store.path), str(tmp_path / "keys"))
    result = CliRunner().invoke(trace_command, [KALE, "--direction", "forward"], obj=context)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "held by dc 400 KGM, farm 350 KGM, store 240 KGM · 990 KGM of 1000 KGM" in lines[0]
    assert lines[1:6] == [
        "",
        "who holds how much now:",
        "   dc (distributor): holds 400 KGM",
        "   farm (producer): holds 350 KGM, 100 KGM of it in transit to clinic",
        "   store (retailer): holds 240 KGM",
    ]
    assert lines[6] == (
        "   farm → store: shipped 250 KGM, received 240 KGM, damaged 5 KGM, short 5 KGM"
    )
    as_json = CliRunner().invoke(trace_command, [KALE, "--json"], obj=context)
    held = json.loads(as_json.output)["lot"]["holdings"]
    farm = next(h for h in held["holders"] if h["party"]["name"] == "farm")
    assert farm["held"] == 350 and farm["free"] == 250
    assert farm["in_transit_to"][0]["party"]["name"] == "clinic"
    assert held["shortfall"] == 5 and held["unit"] == "KGM"


def test_the_recall_report_lists_quantities_per_holder(world, tmp_path):
    from provenance.store.accounts.accounts import Accounts
    from provenance.web.portal.reports import recall_report

    split_across_two_shops(world)
    world.ok("regulator", "recall", [KALE], {"reason": "Listeria", "class": "I"}, time=at(5))
    lot = world.store.lot_by_uri(KALE)
    accounts = Accounts(tmp_path / "accounts", secret=b"s" * 32)
    report = recall_report(world.store, accounts, lot)
    (affected,) = report.affected
    assert affected.holder_lines == [
        "dc: 400 KGM",
        "farm: 350 KGM (100 KGM in transit to clinic)",
        "store: 240 KGM",
    ]
    by_party = {entry["party"]: entry["lots"][0] for entry in report.quantities_by_holder}
    assert by_party["farm"] == {"lot": KALE, "held": 350, "in_transit": 100, "unit": "KGM"}
    assert by_party["store"]["held"] == 240
    assert report.to_json()["quantities_by_holder"] == report.quantities_by_holder
    assert "dc: 400 KGM; farm: 350 KGM (100 KGM in transit to clinic)" in report.lots_csv()


# --- the lot page and its JSON twin


def test_the_lot_page_shows_who_holds_how_much_once_split(tmp_path):
    from support.world import World

    from provenance.web import create_app

    world = World.create(tmp_path)
    split_across_two_shops(world)
    # a logger rides with the store's part: the legs and the cold chain still read
    world.ok("store", "attach", [KALE], {"device": world.did("probe")}, time=at(3.5))
    world.ledger.append([world.reading(4 + k / 4, 3.0, lots=[KALE]) for k in range(8)])
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            "TESTING": True,
        }
    )
    client = app.test_client()
    path = KALE.removeprefix("https://id.gs1.org")
    body = client.get(path, headers={"Accept": "application/json"}).get_json()
    holders = {h["party"]["name"]: h for h in body["holders"]}
    assert holders["dc"]["quantity"] == {"value": 400, "unit": "KGM"}
    assert holders["farm"]["quantity"]["value"] == 350 and holders["farm"]["in_transit"] == 100
    assert holders["store"]["quantity"]["value"] == 240
    assert body["legs"] and body["cold_chain"] is not None
    page = client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<ul class="holders">' in html
    for name in ("dc", "farm", "store"):
        assert f"<li>{name}:" in html


# --- the portal's API


def test_the_api_ships_and_receives_quantities(portal):
    world = portal.world
    commission_kale(world)
    farm, dc = portal.token("farm"), portal.token("dc")
    body = {"batches": [KALE], "to": "dc", "quantities": lot_quantities(KALE, 600)}
    shipped = portal.api("POST", "/api/v1/shipments", farm, json=body)
    assert shipped.status_code == 201, shipped.json
    more = portal.api("POST", "/api/v1/shipments", farm, json=body)
    assert more.status_code == 409 and more.json["reason"] == "quantity"
    assert "at most 400 KGM" in more.json["detail"]
    bad = {**body, "quantities": [{"batch": KALE, "quantity": {"value": "a lot"}}]}
    assert portal.api("POST", "/api/v1/shipments", farm, json=bad).status_code == 400
    received = portal.api(
        "POST",
        f"/api/v1/shipments/{shipped.json['shipment']}/receive",
        dc,
        json={"quantities": lot_quantities(KALE, 590), "damaged": lot_quantities(KALE, 10)},
    )
    assert received.status_code == 201, received.json
    assert held_by(world) == {"farm": 400, "dc": 590}


def test_the_regulators_trace_page_lists_each_holder(portal):
    split_across_two_shops(portal.world)
    page = portal.client("reg1").get(f"/portal/regulator/trace?uri={KALE}&direction=forward")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for share in ("dc: 400", "farm: 350", "store: 240"):
        assert f'<div class="holder">{share}' in html, share
    assert "in transit to clinic: 100" in html


def test_a_key_rotation_carries_the_holdings(world):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    commission_kale(world)
    receive(world, "dc", ship(world, "farm", "dc", 300))
    world.keys["farm2"] = Ed25519PrivateKey.generate()
    data = {"subject": world.did("farm"), "key": world.did("farm2"), "custodial": False}
    world.ok("farm", "rotate", None, data, time=at(3.5))
    assert held_by(world) == {"farm": 700, "dc": 300}  # the same party, its new key
    assert ship(world, "farm2", "store", 700, hours=4).status == "accepted"
    assert ship(world, "farm2", "store", 1, hours=4.1).reason == "quantity"
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, [str(p) for p in report.problems]


def test_the_backfill_rebuilds_what_the_ledger_wrote(world):
    """0011's backfill replays the log through the same writers: on a ledger
    with splits, a short receipt, a dispense, a transform and a key rotation,
    it rebuilds the holdings exactly."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provenance.store.replay import STATE_TABLES

    split_across_two_shops(world)
    world.ok("store", "dispense", [KALE], {"quantity": q(12.5)}, time=at(4))
    salad = f"https://id.gs1.org/01/{GTIN}/10/SALAD2"
    data = {
        "inputs": [{"batch": KALE, "quantity": q(100)}],
        "outputs": [{"batch": salad, "quantity": q(80, "EA"), "product": "Salad"}],
    }
    world.ok("farm", "transform", [KALE, salad], data, time=at(4))
    world.keys["dc2"] = Ed25519PrivateKey.generate()
    rotation = {"subject": world.did("dc"), "key": world.did("dc2"), "custodial": False}
    world.ok("dc", "rotate", None, rotation, time=at(4.5))
    tables = ("holdings", "shipment_lots")
    before = {name: sorted(STATE_TABLES[name](world.store), key=repr) for name in tables}
    with world.store.transaction():
        world.store.conn.execute("DELETE FROM holdings")
        world.store.conn.execute("DELETE FROM shipment_lots")
        store_holdings.backfill_holdings(world.store.conn)
    after = {name: sorted(STATE_TABLES[name](world.store), key=repr) for name in tables}
    assert after == before
    assert held_by(world)["dc"] == 400 and held_by(world)["farm"] == 250


def test_the_transform_form_offers_a_lot_the_party_holds_part_of(portal):
    world = portal.world
    commission_kale(world)
    receive(world, "store", ship(world, "farm", "store", 400))  # store: the lot's custodian
    page = portal.client("farm1").get("/portal/transform")
    assert page.status_code == 200
    assert KALE in page.get_data(as_text=True)  # the farm still holds 600 KGM of it


def test_a_pallet_carries_what_was_packed_of_a_split_lot(world):
    """Packing 300 of 1,000 kg on a pallet and shipping the pallet moves the
    300 kg, not everything the farm holds; packing more than is free is refused."""
    commission_kale(world)
    over = world.append(
        "farm",
        "pack",
        [KALE],
        {"sscc": PALLET, "contents": lot_quantities(KALE, 1200)},
        time=at(1),
    )
    assert over.reason == "quantity" and "at most 1000 KGM" in over.message, over
    world.ok(
        "farm",
        "pack",
        [KALE],
        {"sscc": PALLET, "contents": lot_quantities(KALE, 300)},
        time=at(1),
    )
    data = {"to": world.did("dc"), "pallets": [PALLET]}
    shipped = world.append("farm", "ship", [KALE], data, time=at(2))
    assert shipped.status == "accepted", shipped
    assert holdings(world.store, KALE).holder("farm").in_transit == 300
    assert receive(world, "dc", shipped).status == "accepted"
    assert held_by(world) == {"farm": 700, "dc": 300}
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert report.ok, report.problems
