"""Key rotation (issue 11, part 1; docs/protocol.md "Key rotation"): a party or
device moves to a new key by its old key, or by the registrar together with a
regulator when the old key is lost; what the old key held carries over, the
old key is refused from then on, and every attempt to take over a key without
both consents fails."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.world import LOT, World, at

from provenance.core.bundle import verify_bundle
from provenance.core.errors import VerificationError
from provenance.core.rotation import approval, statement
from provenance.core.signing import did_of
from provenance.ledger.audit import verify_ledger
from provenance.ledger.proofs import build_bundle


def rotate(
    world: World,
    who: str,
    new: str,
    *,
    signer: str | None = None,
    hours: float = 2,
    approver: str | None = None,
    reason: str | None = None,
    **extra: Any,
):
    """Sign a rotation of *who* to a fresh key kept as world.keys[new]; by *who*
    itself unless *signer* says otherwise; *approver* adds that key's approval."""
    world.keys[new] = Ed25519PrivateKey.generate()
    data: dict[str, Any] = {"subject": world.did(who), "key": world.did(new), **extra}
    if not who.startswith("probe"):  # a party says who holds its new key
        data.setdefault("custodial", False)
    if reason is not None:
        data["reason"] = reason
    if approver is not None:
        terms = statement(data["subject"], data["key"], at(hours), reason)
        data["approval"] = approval(world.did(approver), world.keys[approver].sign(terms))
    return world.append(signer or who, "rotate", None, data, time=at(hours))


def test_rotation_by_the_old_key_carries_custody_shipments_and_attachments(world: World):
    shipped = world.ok("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(1.5))
    assert rotate(world, "carrier", "carrier2").status == "accepted"
    # The shipment offered to the old key is received by the new one.
    world.ok("carrier2", "receive", [LOT], {"shipment": shipped.event_id}, time=at(3))
    lot = world.store.lot_by_uri(LOT)
    assert world.store.identity_by_id(lot.custodian).did == world.did("carrier2")
    # The new key ships on; the old key is refused from the rotation's time on.
    refused = world.append("carrier", "ship", [LOT], {"to": world.did("dc")}, time=at(4))
    assert refused.reason == "revoked"
    world.ship_and_receive("carrier2", "dc", [LOT], 4)


def test_custody_and_an_open_shipment_sent_by_the_old_key_carry_over(world: World):
    world.ok("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(1.5))
    assert rotate(world, "farm", "farm2").status == "accepted"
    ((ship_index, *_),) = world.store.open_shipments().values()
    sender = world.store.shipment(ship_index)[0]
    assert world.store.identity_by_id(sender).did == world.did("farm2")
    # The farm's GS1 prefixes and its device carry over.
    world.ok(
        "farm2",
        "commission",
        ["https://id.gs1.org/01/09506000134352/10/NEW1"],
        {"gtin": "09506000134352", "lot": "NEW1", "product": "Kale"},
        time=at(3),
    )
    probe = world.store.identity_by_did(world.did("probe"))
    assert world.store.identity_by_id(probe.owner).did == world.did("farm2")


def test_a_device_rotation_keeps_its_attachments(world: World):
    assert rotate(world, "probe", "probe2").status == "accepted"
    accepted = world.ledger.append([world.reading(3, 4.0, who="probe2")])[0]
    assert accepted.status == "accepted"
    filed = world.store.event_at(accepted.index).lots
    assert [world.store.subject(chain_id) for chain_id in filed] == [LOT]
    late = world.ledger.append([world.reading(4, 4.0, who="probe")])[0]
    assert late.reason == "revoked"
    # A reading the old key signed before the rotation, arriving late (a gateway
    # was offline), is still filed under the lot it rode with.
    buffered = world.ledger.append([world.reading(1.5, 4.0, who="probe")])[0]
    assert buffered.status == "accepted", buffered
    filed = world.store.event_at(buffered.index).lots
    assert [world.store.subject(chain_id) for chain_id in filed] == [LOT]
    world.ok("farm", "detach", [LOT], {"device": world.did("probe2")}, time=at(5))


def test_events_signed_by_the_old_key_stay_valid_and_name_it(world: World):
    inspected = world.ok("regulator", "inspect", [LOT], {"result": "pass"}, time=at(1))
    rotate(world, "regulator", "regulator2", hours=2)
    stored = world.store.event_at(inspected.index)
    assert stored.envelope.signer == world.did("regulator")
    stored.envelope.verify_signature()
    assert verify_ledger(world.store, world.log_public_key).ok


# --- attacks


def test_a_rotation_signed_by_a_third_party_is_refused(world: World):
    result = rotate(world, "farm", "mine", signer="carrier")
    assert result.reason == "unauthorised"
    assert "only farm's own key" in result.message
    assert world.store.identity_by_did(world.did("mine")) is None


def test_the_registrar_alone_cannot_move_a_key(world: World):
    result = rotate(world, "farm", "operator", signer="registrar")
    assert (result.reason, world.store.identity_by_did(world.did("operator"))) == (
        "unauthorised",
        None,
    )
    assert "approval" in result.message


@pytest.mark.parametrize("forgery", ["not-a-regulator", "other-terms", "bit-flip", "self"])
def test_a_recovery_with_a_forged_approval_is_refused(world: World, forgery: str):
    world.keys["operator"] = Ed25519PrivateKey.generate()
    data = {
        "subject": world.did("farm"),
        "key": world.did("operator"),
        "reason": "lost",
        "custodial": False,
    }
    approver, terms = "regulator", statement(data["subject"], data["key"], at(2), "lost")
    if forgery == "not-a-regulator":  # the operator's own party signs the approval
        approver = "carrier"
    elif forgery == "other-terms":  # the regulator approved another key
        terms = statement(data["subject"], world.did("carrier"), at(2), "lost")
    elif forgery == "self":  # a regulator approving its own recovery
        data["subject"] = world.did("regulator")
        terms = statement(data["subject"], data["key"], at(2), "lost")
    signature = world.keys[approver].sign(terms)
    if forgery == "bit-flip":
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    data["approval"] = approval(world.did(approver), signature)
    result = world.append("registrar", "rotate", None, data, time=at(2))
    assert result.reason == "unauthorised", result
    assert world.store.identity_by_did(world.did("operator")) is None


def test_the_approval_is_bound_to_the_time_it_was_given(world: World):
    """An approval cannot be replayed at another time (e.g. after the party got
    its key back and rotated again)."""
    world.keys["new"] = Ed25519PrivateKey.generate()
    data = {"subject": world.did("farm"), "key": world.did("new"), "custodial": False}
    terms = statement(data["subject"], data["key"], at(2), None)
    data["approval"] = approval(world.did("regulator"), world.keys["regulator"].sign(terms))
    assert world.append("registrar", "rotate", None, data, time=at(3)).reason == "unauthorised"


def test_the_operator_cannot_take_over_a_party_that_holds_its_own_key(world: World):
    """With the registrar key and every custodial key, but no regulator's
    approval, the operator has no way to move an own-key party's key: the
    registrar path needs the approval, the old-key path the party's key."""
    world.keys["own"] = Ed25519PrivateKey.generate()
    world.ok(
        "registrar",
        "enrol",
        None,
        {
            "subject": world.did("own"),
            "type": "party",
            "name": "Own",
            "role": "carrier",
            "custodial": False,
        },
    )
    for signer in ("registrar", "carrier", "farm", "probe"):
        assert rotate(world, "own", f"x-{signer}", signer=signer).status == "rejected"
    assert world.store.identity_by_name("party", "Own").did == world.did("own")


def test_a_lost_key_is_recovered_by_the_registrar_with_a_regulator(world: World):
    result = rotate(
        world, "farm", "farm2", signer="registrar", approver="regulator", reason="laptop stolen"
    )
    assert result.status == "accepted", result
    assert (
        world.append("farm", "inspect", [LOT], {"result": "pass"}, time=at(3)).reason == "revoked"
    )
    world.ok("farm2", "inspect", [LOT], {"result": "pass"}, time=at(3))
    assert verify_ledger(world.store, world.log_public_key).ok


def test_a_revoked_party_comes_back_only_through_recovery(world: World):
    world.ok("registrar", "revoke", None, {"subject": world.did("carrier"), "from": at(1)})
    assert rotate(world, "carrier", "by-itself").reason == "revoked"
    assert (
        rotate(
            world,
            "carrier",
            "carrier2",
            signer="registrar",
            approver="regulator",
            reason="audit passed",
        ).status
        == "accepted"
    )
    world.ok("farm", "ship", [LOT], {"to": world.did("carrier2")}, time=at(3))
    assert world.store.identity_by_name("party", "carrier").did == world.did("carrier2")
    assert verify_ledger(world.store, world.log_public_key).ok


def test_a_key_is_rotated_once_and_only_to_a_fresh_key(world: World):
    rotate(world, "carrier", "carrier2")
    assert rotate(world, "carrier", "again", hours=1).reason in ("conflict", "revoked")
    world.keys["carrier3"] = world.keys["dc"]  # a key another party holds
    result = world.append(
        "carrier2",
        "rotate",
        None,
        {"subject": world.did("carrier2"), "key": world.did("dc"), "custodial": False},
        time=at(3),
    )
    assert result.reason == "conflict"
    result = world.append(
        "registrar",
        "rotate",
        None,
        {"subject": world.did("registrar"), "key": did_of(Ed25519PrivateKey.generate())},
    )
    assert result.reason == "unauthorised"


# --- the log alone agrees


def test_verify_and_the_audit_replay_agree_with_the_live_ledger(shared_world: World):
    world = shared_world
    world.ok("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(1.5))
    rotate(world, "carrier", "carrier2", hours=2)
    rotate(world, "farm", "farm2", signer="registrar", approver="regulator", hours=2.5)
    rotate(world, "probe", "probe2", hours=2.6)
    world.ledger.append([world.reading(2.7, 4.0, who="probe2")])
    report = verify_ledger(world.store, world.log_public_key)
    assert report.ok, report.problems


def test_verify_catches_a_rotation_edited_in_the_identities_table(shared_world: World):
    world = shared_world
    rotate(world, "carrier", "carrier2")
    world.store.conn.execute(
        "UPDATE lots SET custodian = (SELECT id FROM identities WHERE name = 'carrier' "
        "AND rotated_to IS NOT NULL)"
    )
    world.store.conn.commit()
    assert not verify_ledger(world.store, world.log_public_key).ok


def test_a_bundle_of_a_lot_with_a_rotated_custodian_verifies(world: World):
    world.ok("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(1.5))
    rotate(world, "carrier", "carrier2", hours=2)
    shipped = world.store.event_at(world.store.log_size() - 2).envelope
    world.ok("carrier2", "receive", [LOT], {"shipment": shipped.event_id}, time=at(3))
    rotate(world, "carrier2", "carrier3", signer="registrar", approver="regulator", hours=4)
    world.ship_and_receive("carrier3", "dc", [LOT], 5)
    bundle = json.loads(json.dumps(build_bundle(world.store, LOT)))
    report = verify_bundle(bundle, world.log_public_key)
    assert report.subject == LOT
    # The carrier's three keys, and the regulator who approved the recovery.
    for name in ("carrier", "carrier2", "carrier3", "regulator"):
        assert world.did(name) in report.signers
    assert report.signers[world.did("carrier3")]["name"] == "carrier"


def _bundle_with_rotation(world: World) -> tuple[dict[str, Any], str]:
    world.ok("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(1.5))
    shipped = world.store.event_at(world.store.log_size() - 1).envelope
    rotate(world, "carrier", "carrier2", signer="registrar", approver="regulator", hours=2)
    world.ok("carrier2", "receive", [LOT], {"shipment": shipped.event_id}, time=at(3))
    return json.loads(json.dumps(build_bundle(world.store, LOT))), world.did("carrier2")


def test_a_bundle_without_the_chain_a_key_rotated_from_is_refused(world: World):
    bundle, _new = _bundle_with_rotation(world)
    bundle["chains"] = [c for c in bundle["chains"] if c["subject"] != world.did("carrier")]
    with pytest.raises(VerificationError, match="lacks the chain of the key it rotates from"):
        verify_bundle(bundle, world.log_public_key)


def test_a_bundle_without_the_approving_regulator_is_refused(world: World):
    bundle, _new = _bundle_with_rotation(world)
    regulator = world.did("regulator")
    bundle["chains"] = [c for c in bundle["chains"] if c["subject"] != regulator]
    with pytest.raises(VerificationError, match="not by another enrolled regulator"):
        verify_bundle(bundle, world.log_public_key)


def test_a_party_rotation_says_who_holds_the_new_key(world: World):
    world.keys["new"] = Ed25519PrivateKey.generate()
    data = {"subject": world.did("carrier"), "key": world.did("new")}
    result = world.append("carrier", "rotate", None, data, time=at(2))
    assert result.reason == "schema" and "custodial" in result.message
    result = world.append(
        "probe",
        "rotate",
        None,
        {**data, "subject": world.did("probe"), "custodial": False},
        time=at(2),
    )
    assert result.reason == "schema"
    result = world.append(
        "regulator",
        "rotate",
        None,
        {"subject": world.did("regulator"), "key": world.did("new"), "custodial": True},
        time=at(2),
    )
    assert result.reason == "schema" and "regulator" in result.message


def test_an_old_ledger_keeps_its_identities_and_verifies_after_the_migration(tmp_path):
    """Migration 0008 rebuilds the identities table (tests/fixtures/README.md):
    every row stays as it was, a name stays unique among current keys, and
    `verify` still passes."""
    import shutil
    import sqlite3

    from support.lineage import BEFORE_LINEAGE_LOG_KEY, FIXTURES

    from provenance.store.db import Store

    path = tmp_path / "ledger.db"
    shutil.copyfile(FIXTURES / "ledger-before-lineage.db", path)
    columns = "id, did, type, name, role, owner, enrol_event, revoked_from, revoke_event"
    with sqlite3.connect(path) as old:
        before = old.execute(f"SELECT {columns} FROM identities ORDER BY id").fetchall()
    old.close()
    store = Store(path)
    assert "0010_rotation" in store.applied_migrations()
    after = store.conn.execute(f"SELECT {columns} FROM identities ORDER BY id").fetchall()
    assert after == before and before
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(
            "INSERT INTO identities (id, did, type, name, enrol_event) "
            "SELECT 9999, 'did:key:other', type, name, 0 FROM identities WHERE id = ?",
            (before[1][0],),
        )
    report = verify_ledger(store, bytes.fromhex(BEFORE_LINEAGE_LOG_KEY), workers=1)
    assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize("edit", ["redirect", "link", "owner"])
def test_verify_catches_a_rotation_link_edited_in_the_table(shared_world: World, edit: str):
    """The links between a rotated key and its successor (which the CLI and the
    portal follow) are derived from the log: an edit is caught."""
    world = shared_world
    rotate(world, "carrier", "carrier2")
    rotate(world, "farm", "farm2", hours=2.5)
    sql = {
        # (unlinking instead makes two current keys of one name: the table refuses it)
        "redirect": "UPDATE identities SET rotated_to = (SELECT id FROM identities WHERE "
        "name = 'dc') WHERE name = 'carrier' AND rotated_to IS NOT NULL",
        "link": "UPDATE identities SET rotated_to = (SELECT id FROM identities WHERE name = "
        "'carrier' AND rotated_to IS NULL) WHERE name = 'dc'",
        "owner": "UPDATE identities SET owner = (SELECT id FROM identities WHERE name = 'farm' "
        "AND rotated_to IS NOT NULL) WHERE type = 'device'",
    }[edit]
    world.store.conn.execute(sql)
    world.store.conn.commit()
    assert not verify_ledger(world.store, world.log_public_key).ok


def test_a_bundle_with_readings_by_a_device_before_and_after_its_rotation_verifies(world: World):
    world.ledger.append([world.reading(1, 4.0)])
    rotate(world, "probe", "probe2", hours=2)
    world.ledger.append([world.reading(3, 4.5, who="probe2")])
    bundle = json.loads(json.dumps(build_bundle(world.store, LOT)))
    report = verify_bundle(bundle, world.log_public_key)
    signers = {event.signer for event in report.events if event.kind == "reading"}
    assert signers == {world.did("probe"), world.did("probe2")}
    assert report.warnings == []
