"""Places and the GS1 identifiers of parties and places (docs/protocol.md §15):
GLN check digits, the `place` kind and its registry, locations cited by GLN
alone, PGLNs on enrolments, and old events that predate the check digit rule."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.world import LOT, at

from provenance.core import fields, gs1
from provenance.core.errors import ValidationError
from provenance.core.kinds import validate_data
from provenance.core.places import place_chain
from provenance.core.signing import did_of
from provenance.exchange.places import (
    Known,
    describe_address,
    describe_location,
    resolve_location,
    store_registry,
)
from provenance.ledger.audit import verify_ledger, verify_lot
from provenance.ledger.reasons import CONFLICT, SCHEMA, UNAUTHORISED
from provenance.store import places
from provenance.store.migrations import GLN_RULES_FROM

GLN = "9506000000008"  # 950600000000 + check digit 8
BAD_GLN = "9506000000001"
PGLN = "9506000000015"
ADDRESS = {
    "street": "1 Mill Lane",
    "city": "Nakuru",
    "region": "Nakuru County",
    "postal_code": "20100",
    "country": "KE",
}
PACKHOUSE = {
    "gln": GLN,
    "name": "Riverside packhouse",
    "address": ADDRESS,
    "lat": -0.3,
    "lon": 36.1,
    "type": "packhouse",
}


def test_gln_check_digit_is_checked_and_the_error_says_the_expected_digit():
    assert gs1.validate_gln(GLN) == GLN
    with pytest.raises(ValidationError) as caught:
        gs1.validate_gln(BAD_GLN, "data.location.gln")
    assert str(caught.value) == (
        "data.location.gln: is not a GLN: its check digit is 1, expected 8 (9506000000008) "
        "— re-read it from the GS1 registry or the label"
    )
    for wrong in ("950600000000", "95060000000080", "95060000000a8", 9506000000008):
        with pytest.raises(ValidationError):
            gs1.validate_gln(wrong)


@pytest.mark.parametrize(
    ("kind", "data", "field"),
    [
        ("ship", {"to": "did:key:x", "location": {"name": "Dock", "gln": BAD_GLN}}, "location"),
        ("place", {**PACKHOUSE, "gln": BAD_GLN}, "gln"),
        ("commission", {"origin": {"name": "Farm", "gln": BAD_GLN}}, "origin"),
    ],
)
def test_every_gln_field_checks_the_check_digit(world, kind, data, field):
    """Every GLN of new input: a location's, a commission's origin, a place's, a PGLN."""
    envelope_data = {**data}
    if kind == "ship":
        envelope_data["to"] = world.did("dc")
        lots = [LOT]
    elif kind == "commission":
        uri = gs1.lot_uri("09506000134352", "NEW1")
        envelope_data = {"gtin": "09506000134352", "lot": "NEW1", "product": "Kale", **data}
        lots = [uri]
    else:
        lots = None
    with pytest.raises(ValidationError, match="expected 8"):
        validate_data(kind, envelope_data, tuple(lots) if lots else None)
    with pytest.raises(ValidationError, match="expected 8"):
        world.sign("farm", kind, lots, envelope_data)


def test_a_pgln_is_checked_and_only_parties_have_one(world):
    key = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    base = {"subject": key, "type": "party", "name": "Mill", "role": "processor"}
    validate_data("enrol", {**base, "pgln": PGLN, "address": ADDRESS}, None)
    with pytest.raises(ValidationError, match=r"data\.pgln: is not a GLN.*expected 5"):
        validate_data("enrol", {**base, "pgln": "9506000000011"}, None)
    device = {"subject": key, "type": "device", "name": "probe-9", "owner": world.did("farm")}
    with pytest.raises(ValidationError, match=r"data\.pgln: only a party's enrolment"):
        validate_data("enrol", {**device, "pgln": PGLN}, None)
    with pytest.raises(ValidationError, match=r"data\.address: needs at least one of"):
        validate_data("enrol", {**base, "address": {}}, None)


def test_a_location_needs_a_name_or_a_gln():
    validate_data(
        "dispense", {"quantity": {"value": 1, "unit": "EA"}, "location": {"gln": GLN}}, (LOT,)
    )
    with pytest.raises(ValidationError, match=r"data\.location\.name: is required unless"):
        validate_data(
            "dispense",
            {"quantity": {"value": 1, "unit": "EA"}, "location": {"country": "KE"}},
            (LOT,),
        )


def test_a_party_registers_a_place_and_events_cite_it_by_gln(world):
    registered = world.ok("packer", "place", None, PACKHOUSE)
    found = places.place(world.store, GLN)
    assert found is not None and found.party_did == world.did("packer")
    assert (found.name, found.address, found.type) == ("Riverside packhouse", ADDRESS, "packhouse")
    chain = world.store.chain_by_subject(place_chain(GLN))
    assert chain is not None and place_chain(GLN) == f"https://id.gs1.org/414/{GLN}"
    assert registered.status == "accepted"
    # Registered again by the same party: the newest registration is in force.
    world.ok("packer", "place", None, {**PACKHOUSE, "name": "Riverside packhouse 2"})
    assert places.place(world.store, GLN).name == "Riverside packhouse 2"
    # A ship citing only the GLN: accepted, and resolved from the registry.
    world.ok(
        "farm", "ship", [LOT], {"to": world.did("packer"), "location": {"gln": GLN}}, time=at(2)
    )
    registry = store_registry(world.store)
    assert resolve_location({"gln": GLN}, registry)["address"] == ADDRESS
    assert describe_location({"gln": GLN}, registry) == (
        "Riverside packhouse 2, 1 Mill Lane, Nakuru, Nakuru County 20100, KE (GLN 9506000000008)"
    )
    assert [p.gln for p in places.places(world.store, found.party)] == [GLN]


def test_another_party_may_not_take_a_registered_gln(world):
    world.ok("packer", "place", None, PACKHOUSE)
    taken = world.append("dc", "place", None, {**PACKHOUSE, "name": "Not theirs"})
    assert (taken.status, taken.reason) == ("rejected", CONFLICT)
    assert "registered by 'packer'" in taken.message
    assert places.place(world.store, GLN).name == "Riverside packhouse"
    device = world.append("probe", "place", None, PACKHOUSE)
    assert (device.status, device.reason) == ("rejected", UNAUTHORISED)


def test_a_pgln_belongs_to_one_party(world):
    world.enrol_party("mill", "processor")
    key = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
    first = {"subject": key, "type": "party", "name": "Mill A", "role": "processor", "pgln": PGLN}
    world.ok("registrar", "enrol", None, {**first, "address": ADDRESS})
    details = places.party_details(world.store, world.store.identity_by_did(key).id)
    assert (details.pgln, details.address) == (PGLN, ADDRESS)
    second = {**first, "subject": did_of(Ed25519PrivateKey.generate()), "name": "Mill B"}
    refused = world.append("registrar", "enrol", None, second)
    assert (refused.status, refused.reason) == ("rejected", CONFLICT)
    # Another party may not register someone's PGLN as its place.
    theirs = world.append("dc", "place", None, {**PACKHOUSE, "gln": PGLN})
    assert (theirs.status, theirs.reason) == ("rejected", CONFLICT)


def test_the_audit_replays_places_and_finds_an_edited_registry(world):
    world.ok("packer", "place", None, PACKHOUSE)
    assert verify_ledger(world.store, world.log_public_key).ok
    with world.store.transaction():
        world.store.conn.execute("UPDATE places SET name = 'Elsewhere' WHERE gln = ?", (GLN,))
    report = verify_ledger(world.store, world.log_public_key)
    assert not report.ok
    assert any(
        "places" in problem.message and "edited" in problem.message for problem in report.problems
    )


def _old_ship(world):
    """A ship signed and logged before the check digit rule: 13 digits were enough."""
    with fields.text_as_signed():
        envelope = world.sign(
            "farm",
            "ship",
            [LOT],
            {"to": world.did("dc"), "location": {"name": "Dock", "gln": BAD_GLN}},
        )
    return world.ledger.append([envelope])[0]


def test_events_logged_before_the_rule_still_verify(world):
    assert _old_ship(world).status == "accepted"
    with (
        world.store.transaction()
    ):  # as a ledger migrated after the event: the rule applies after it
        world.store.conn.execute(
            "UPDATE meta SET value = ? WHERE key = ?", (str(world.store.log_size()), GLN_RULES_FROM)
        )
    assert verify_ledger(world.store, world.log_public_key).ok
    assert verify_lot(world.store, LOT, world.log_public_key).events  # the bundle verifies
    # New input is held to the rule.
    with pytest.raises(ValidationError, match="expected 8"):
        world.sign(
            "farm",
            "ship",
            [LOT],
            {"to": world.did("dc"), "location": {"name": "Dock", "gln": BAD_GLN}},
        )


def test_a_bad_gln_logged_after_the_rule_is_found_by_the_audit(world):
    """The class: an event the schema refuses that got into the log after the
    rule (by an edit, or a ledger misled) is reported, whatever the GLN field."""
    assert _old_ship(world).status == "accepted"  # the boundary is 0: after the rule
    report = verify_ledger(world.store, world.log_public_key)
    assert not report.ok
    assert any(SCHEMA in p.message and "expected 8" in p.message for p in report.problems)


def test_the_boundary_moved_beyond_the_log_is_reported(world):
    with world.store.transaction():
        world.store.conn.execute(
            "UPDATE meta SET value = '999999' WHERE key = ?", (GLN_RULES_FROM,)
        )
    report = verify_ledger(world.store, world.log_public_key)
    assert any(GLN_RULES_FROM in p.message for p in report.problems)


def test_a_rotated_party_keeps_its_pgln_and_places(world):
    world.ok("packer", "place", None, PACKHOUSE)
    new_key = Ed25519PrivateKey.generate()
    world.ok(
        "packer",
        "rotate",
        None,
        {"subject": world.did("packer"), "key": did_of(new_key), "custodial": False},
    )
    new = world.store.identity_by_did(did_of(new_key))
    assert places.place(world.store, GLN).party == new.id
    world.keys["packer2"] = new_key
    world.ok("packer2", "place", None, {**PACKHOUSE, "name": "Renamed"})
    assert verify_ledger(world.store, world.log_public_key).ok


def test_describe_location_in_plain_words():
    assert describe_address(ADDRESS) == "1 Mill Lane, Nakuru, Nakuru County 20100, KE"
    assert describe_location(None) == ""
    assert describe_location({"gln": GLN}) == "GLN 9506000000008"  # unknown to the registry
    assert (
        describe_location({"name": "Dock 4", "country": "KE", "lat": 1, "lon": 2})
        == "Dock 4, KE, 1, 2"
    )
    known = Known(GLN, "Packhouse", "packer", {"city": "Nakuru"}, -0.3, 36.1, "packhouse")
    registry = {GLN: known}.get
    # The event's own words win; the registry fills the gaps.
    assert resolve_location({"gln": GLN, "name": "Bay 2"}, registry) == {
        "gln": GLN,
        "name": "Bay 2",
        "address": {"city": "Nakuru"},
        "lat": -0.3,
        "lon": 36.1,
    }
    assert describe_location({"gln": GLN}, registry) == "Packhouse, Nakuru (GLN 9506000000008)"


def test_the_fsma_sheet_describes_a_place_cited_by_gln(world):
    """A ship citing only a registered place's GLN: its FSMA 204 row names the
    place and its address (docs/fsma204.md), not just "GLN …"."""
    from provenance.exchange.fsma204 import store_rows
    from provenance.exchange.fsma_columns import HEADER

    world.ok("packer", "place", None, PACKHOUSE)
    world.ok(
        "farm", "ship", [LOT], {"to": world.did("packer"), "location": {"gln": GLN}}, time=at(2)
    )
    rows = [dict(zip(HEADER, row, strict=True)) for row in store_rows(world.store)]
    (shipping,) = [row for row in rows if "Shipping" in str(row.values())]
    described = " | ".join(str(v) for k, v in shipping.items() if "Location" in k and v)
    assert "Riverside packhouse" in described and "1 Mill Lane" in described, shipping
