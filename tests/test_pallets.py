"""Cases and pallets (docs/protocol.md, "Pallets and cases"): pack and unpack by
SSCC, a shipment of pallets moves everything on them, and every refusal says
what is wrong."""

from __future__ import annotations

import pytest
from support.pallets import (
    CASE,
    LOT2,
    LOT3,
    PALLET,
    commission,
    contents,
    pallet_world,
    ship_pallet,
    sscc,
)
from support.world import LOT, at

from provenance.core import sscc as sscc_rules
from provenance.core.envelope import Envelope
from provenance.core.errors import ValidationError
from provenance.core.kinds import validate_data
from provenance.ledger.audit import verify_ledger
from provenance.ledger.kinds import pallets
from provenance.store import pallets as tables


@pytest.fixture
def packed(world):
    return pallet_world(world)


def refused(world, reason, *args, **kwargs):
    result = world.append(*args, **kwargs)
    assert (result.status, result.reason) == ("rejected", reason), result
    return result.message


# --- the SSCC and the schema


def test_sscc_check_digit_and_epc_uri_follow_gs1():
    assert sscc_rules.validate_sscc("106141412345678908") == "106141412345678908"
    # GS1 EPC Tag Data Standard's own example
    assert sscc_rules.sscc_epc("106141412345678908", 7) == "urn:epc:id:sscc:0614141.1234567890"
    assert sscc_rules.sscc_epc("106141412345678908", None) == (
        "https://id.gs1.org/00/106141412345678908"
    )
    for bad, words in [
        ("106141412345678909", "check digit is 9, expected 8"),
        ("10614141234567890", "18 digits"),
        ("1061414123456789O8", "18 digits"),
        ("１06141412345678908", "18 digits"),
        (106141412345678908, "must be an SSCC"),
    ]:
        with pytest.raises(ValidationError, match=words):
            sscc_rules.validate_sscc(bad, "data.sscc")


def test_pack_schema_refuses_what_cannot_be_a_unit():
    good = {"sscc": PALLET, "contents": contents(LOT)}
    validate_data("pack", good, (LOT,))
    cases = [
        ({**good, "sscc": "1"}, (LOT,), "data.sscc"),
        ({**good, "contents": []}, (), "data.contents"),
        ({**good, "contents": contents(LOT, LOT)}, (LOT,), "lists a lot twice"),
        (good, (LOT, LOT2), "batches"),
        ({**good, "parent": PALLET}, (LOT,), "data.parent"),
        ({"sscc": PALLET, "contents": [{"batch": LOT}]}, (LOT,), "quantity"),
        ({"sscc": PALLET, "contents": contents(*[f"{LOT}{i}" for i in range(65)])}, None, "64"),
    ]
    for data, lots, words in cases:
        with pytest.raises(ValidationError, match=words):
            validate_data("pack", data, lots)
    with pytest.raises(ValidationError, match="lists an SSCC twice"):
        validate_data("receive", {"shipment": "ab" * 32, "pallets": [PALLET, PALLET]}, (LOT,))


# --- pack and unpack


def test_pack_records_the_unit_its_case_and_holder(packed):
    pallet = tables.unit(packed.store, PALLET)
    farm = packed.store.identity_by_did(packed.did("farm")).id
    assert (pallet.holder, pallet.packed_by, pallet.parent, pallet.open) == (farm, farm, None, True)
    assert pallet.cases == [CASE]
    assert pallet.prefix_length == 7  # the farm's prefix 0614141
    assert [uri for _s, p in tables.all_contents(packed.store, PALLET) for uri in [p.lot]] == [
        packed.store.lot_by_uri(u).id for u in (LOT, LOT2, LOT3)
    ]
    # The pack is on each packed lot's chain (its batches); nothing else's.
    lot3 = packed.store.lot_by_uri(LOT3).id
    kinds = [e.envelope.kind for e in packed.store.chain_events(lot3)]
    assert kinds == ["commission", "pack"]
    assert verify_ledger(packed.store, packed.log_public_key).ok


def test_pack_refusals_name_the_rule(packed):
    commission(packed, f"{LOT}X", "LOT42X")
    extra = f"{LOT}X"
    fresh = sscc(9)
    message = refused(
        packed, "conflict", "farm", "pack", [LOT], {"sscc": fresh, "contents": contents(LOT)}
    )
    assert f"already packed on SSCC {PALLET}" in message
    message = refused(
        packed, "conflict", "farm", "pack", [extra], {"sscc": PALLET, "contents": contents(extra)}
    )
    assert "not reused" in message
    # Only who holds the lots packs them.
    refused(
        packed,
        "not-custodian",
        "dc",
        "pack",
        [extra],
        {"sscc": sscc(5, prefix="9999999"), "contents": contents(extra)},
    )
    # The packer's own company prefix, when it has enrolled ones.
    message = refused(
        packed,
        "unauthorised",
        "farm",
        "pack",
        [extra],
        {"sscc": sscc(6, prefix="1234567"), "contents": contents(extra)},
    )
    assert "company prefix" in message
    # A pallet a case starts is the packer's SSCC too.
    message = refused(
        packed,
        "unauthorised",
        "farm",
        "pack",
        [extra],
        {"sscc": sscc(12), "parent": sscc(13, prefix="1234567"), "contents": contents(extra)},
    )
    assert sscc(13, prefix="1234567") in message
    # A case goes on a pallet, a pallet on nothing.
    message = refused(
        packed,
        "conflict",
        "farm",
        "pack",
        [extra],
        {"sscc": sscc(7), "parent": CASE, "contents": contents(extra)},
    )
    assert f"is itself a case on pallet {PALLET}" in message


def test_unpack_needs_the_holder_and_every_lot_on_the_unit(packed):
    message = refused(packed, "schema", "farm", "unpack", [LOT], {"sscc": PALLET})
    assert LOT2 in message and LOT3 in message and "missing" in message
    refused(packed, "not-custodian", "dc", "unpack", [LOT, LOT2, LOT3], {"sscc": PALLET})
    refused(packed, "unknown-lot", "farm", "unpack", [LOT], {"sscc": sscc(40)})
    packed.ok("farm", "unpack", [LOT, LOT2, LOT3], {"sscc": PALLET}, time=at(4))
    assert not tables.unit(packed.store, PALLET).open
    case = tables.unit(packed.store, CASE)
    assert case.open and case.parent is None  # the case stays packed, on nothing now
    refused(packed, "conflict", "farm", "unpack", [LOT, LOT2], {"sscc": PALLET})
    # Loose again, the lots may go on a new pallet.
    packed.ok("farm", "pack", [LOT], {"sscc": sscc(3), "contents": contents(LOT)}, time=at(5))
    assert verify_ledger(packed.store, packed.log_public_key).ok


# --- shipping pallets


def test_shipping_a_pallet_moves_everything_on_it(packed):
    shipment = ship_pallet(packed)
    assert tables.unit(packed.store, PALLET).shipment is not None
    assert tables.unit(packed.store, CASE).shipment is not None  # the case rides along
    refused(packed, "conflict", "farm", "unpack", [LOT, LOT2, LOT3], {"sscc": PALLET})
    packed.ok(
        "dc", "receive", [LOT, LOT2, LOT3], {"shipment": shipment, "pallets": [PALLET]}, time=at(4)
    )
    dc = packed.store.identity_by_did(packed.did("dc")).id
    for unit in (PALLET, CASE):
        found = tables.unit(packed.store, unit)
        assert (found.holder, found.shipment) == (dc, None)
    for uri in (LOT, LOT2, LOT3):
        assert packed.store.lot_by_uri(uri).custodian == dc
    # The new holder unpacks it.
    packed.ok("dc", "unpack", [LOT3], {"sscc": CASE}, time=at(5))
    assert tables.unit(packed.store, PALLET).cases == []
    assert verify_ledger(packed.store, packed.log_public_key).ok


def test_a_shipment_names_the_pallets_contents_exactly(packed):
    dc = packed.did("dc")
    message = refused(
        packed, "schema", "farm", "ship", [LOT, LOT2], {"to": dc, "pallets": [PALLET]}
    )
    assert "missing" in message and LOT3 in message
    message = refused(packed, "schema", "farm", "ship", [LOT], {"to": dc})
    assert f"packed on SSCC {PALLET}" in message and "data.pallets" in message
    message = refused(packed, "schema", "farm", "ship", [LOT3], {"to": dc})
    assert f"packed on SSCC {CASE}" in message and f'add "{PALLET}"' in message
    message = refused(packed, "conflict", "farm", "ship", [LOT3], {"to": dc, "pallets": [CASE]})
    assert f"is a case on pallet {PALLET}" in message
    refused(packed, "unknown-lot", "farm", "ship", [LOT], {"to": dc, "pallets": [sscc(77)]})
    refused(
        packed,
        "not-custodian",
        "dc",
        "ship",
        [LOT, LOT2, LOT3],
        {"to": packed.did("store"), "pallets": [PALLET]},
    )
    # A loose lot travels beside the pallet.
    extra = f"{LOT}X"
    commission(packed, extra, "LOT42X")
    shipped = packed.ok(
        "farm", "ship", [LOT, LOT2, LOT3, extra], {"to": dc, "pallets": [PALLET]}, time=at(3)
    )
    message = refused(
        packed,
        "schema",
        "dc",
        "receive",
        [LOT, LOT2, LOT3, extra],
        {"shipment": shipped.event_id, "pallets": [sscc(77)]},
        time=at(4),
    )
    assert f"missing: {PALLET}" in message and "not on it" in message
    # A shipment of no pallets: refused if the receive claims one.
    packed.ok("dc", "receive", [LOT, LOT2, LOT3, extra], {"shipment": shipped.event_id}, time=at(4))


def test_a_pallet_in_transit_cannot_be_packed_onto_or_shipped_again(packed):
    ship_pallet(packed)
    commission(packed, f"{LOT}X", "LOT42X")
    refused(
        packed,
        "conflict",
        "farm",
        "pack",
        [f"{LOT}X"],
        {"sscc": sscc(8), "parent": PALLET, "contents": contents(f"{LOT}X")},
    )


def test_quantities_on_pallets_are_what_was_packed(packed):
    moved = pallets.quantities_on(packed.ledger, [PALLET])
    assert sorted((m["batch"], m["quantity"]["value"]) for m in moved) == [
        (LOT, 100),
        (LOT2, 100),
        (LOT3, 20),
    ]


def test_a_refused_pallet_event_stores_nothing(packed):
    before = packed.store.conn.execute("SELECT count(*) FROM pallets").fetchone()[0]
    refused(packed, "schema", "farm", "ship", [LOT], {"to": packed.did("dc"), "pallets": [PALLET]})
    assert packed.store.conn.execute("SELECT count(*) FROM pallets").fetchone()[0] == before
    assert tables.unit(packed.store, PALLET).shipment is None


def test_pack_envelope_round_trips(packed):
    event = packed.sign("farm", "pack", [LOT], {"sscc": sscc(11), "contents": contents(LOT)})
    assert Envelope.from_json(event.canonical_bytes()).data["sscc"] == sscc(11)
