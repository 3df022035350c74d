"""Ledger.append: the one door for writes. Authorisation per kind, dedupe and
replay, custody, attachments, atomicity, and that refused input stores nothing."""

from __future__ import annotations

import json

import pytest
from support.world import GTIN, HOUR, LOT, T0, World, at

from provenance.ledger.append import Ledger
from provenance.ledger.audit import verify_ledger
from provenance.ledger.proofs import checkpoint_body

LOT2 = f"https://id.gs1.org/01/{GTIN}/10/LOT43"
MIX = f"https://id.gs1.org/01/{GTIN}/10/MIX1"


def counts(world: World) -> tuple[int, int]:
    return world.store.log_size(), world.store.conn.execute(
        "SELECT count(*) FROM links"
    ).fetchone()[0]


def commission(world: World, uri: str = LOT2, who: str = "farm", lot: str = "LOT43"):
    return world.append(
        who, "commission", [uri], {"gtin": GTIN, "lot": lot, "product": "Kale"}, time=at(0)
    )


def test_genesis_is_the_registrars_self_enrolment(world):
    first = world.store.event_at(0)
    assert first.envelope.kind == "enrol"
    assert first.envelope.signer == first.envelope.data["subject"] == world.did("registrar")
    assert world.store.identity_by_did(world.did("registrar")).type == "registrar"


def test_initialise_is_idempotent_and_refuses_other_keys(world):
    again = Ledger.initialise(world.store, world.log_key, world.registrar, "test.local/log")
    assert again.store.log_size() == world.store.log_size()
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provenance.store.db import StoreError

    with pytest.raises(StoreError, match="other keys"):
        Ledger.initialise(world.store, Ed25519PrivateKey.generate(), world.registrar, "x")


def test_readings_without_batches_land_in_the_lots_attached_at_their_time(world):
    commission(world)
    world.ok("farm", "attach", [LOT2], {"device": world.did("probe")}, time=at(5))
    results = world.ledger.append([world.reading(2, 4.0), world.reading(6, 4.5)])
    assert [r.status for r in results] == ["accepted", "accepted"]
    early = world.store.event_at(results[0].index)
    late = world.store.event_at(results[1].index)
    lot1 = world.store.lot_by_uri(LOT).id
    lot2 = world.store.lot_by_uri(LOT2).id
    assert early.lots == (lot1,)
    assert set(late.lots) == {lot1, lot2}
    assert early.envelope.lots is None  # what was signed is kept as it was


def test_detach_ends_the_attachment(world):
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(3))
    assert world.ledger.append([world.reading(2, 4.0)])[0].status == "accepted"
    late = world.ledger.append([world.reading(4, 4.0)])[0]
    assert (late.status, late.reason) == ("rejected", "not-attached")


def test_reading_naming_a_lot_it_is_not_attached_to_is_refused(world):
    commission(world)
    result = world.ledger.append([world.reading(2, 4.0, lots=[LOT2])])[0]
    assert result.reason == "not-attached"
    assert "LOT43" in result.message


def test_same_event_twice_is_a_noop_and_another_event_with_that_seq_is_a_replay(world):
    envelope = world.reading(2, 4.0)
    first = world.ledger.append([envelope])[0]
    before = counts(world)
    again = world.ledger.append([envelope, json.dumps(envelope.to_json())])
    assert [r.status for r in again] == ["duplicate", "duplicate"]
    assert {r.index for r in again} == {first.index}
    assert counts(world) == before
    forged = world.sign(
        "probe", "reading", None, {"temperature_c": 1.0}, time=at(2), seq=envelope.seq
    )
    replay = world.ledger.append([forged])[0]
    assert (replay.status, replay.reason) == ("rejected", "replay")
    assert envelope.event_id in replay.message
    assert counts(world) == before


def test_duplicate_and_replay_inside_one_batch(world):
    envelope = world.reading(2, 4.0)
    forged = world.sign(
        "probe", "reading", None, {"temperature_c": 9.0}, time=at(2), seq=envelope.seq
    )
    results = world.ledger.append([envelope, envelope, forged])
    assert [r.status for r in results] == ["accepted", "duplicate", "rejected"]
    assert results[2].reason == "replay"


@pytest.mark.parametrize(
    ("who", "kind", "data_of", "reason"),
    [
        (
            "carrier",
            "commission",
            lambda w: {"gtin": GTIN, "lot": "X1", "product": "P"},
            "unauthorised",
        ),
        ("farm", "recall", lambda w: {"reason": "r", "class": "I"}, "unauthorised"),
        ("probe", "inspect", lambda w: {"result": "pass"}, "unauthorised"),
        ("farm", "reading", lambda w: {"temperature_c": 3.0}, "unauthorised"),
        ("carrier", "ship", lambda w: {"to": w.did("dc")}, "not-custodian"),
        (
            "carrier",
            "dispense",
            lambda w: {"quantity": {"value": 1, "unit": "EA"}},
            "not-custodian",
        ),
        (
            "farm",
            "enrol",
            lambda w: {"subject": w.did("farm"), "type": "party", "name": "x", "role": "producer"},
            "unauthorised",
        ),
        ("farm", "ship", lambda w: {"to": w.did("probe")}, "unknown-party"),
        ("farm", "attach", lambda w: {"device": w.did("carrier")}, "unknown-device"),
    ],
)
def test_authorisation_per_kind(world, who, kind, data_of, reason):
    lots = (
        None
        if kind == "enrol"
        else ([f"https://id.gs1.org/01/{GTIN}/10/X1"] if kind == "commission" else [LOT])
    )
    before = counts(world)
    result = world.append(who, kind, lots, data_of(world))
    assert (result.status, result.reason) == ("rejected", reason), result
    assert counts(world) == before
    assert world.store.stats()["rejects"][reason] == 1


def test_unknown_signer_and_unknown_lot(world):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    world.keys["stranger"] = Ed25519PrivateKey.generate()
    result = world.append("stranger", "inspect", [LOT], {"result": "pass"})
    assert result.reason == "unknown-signer"
    assert "not enrolled" in result.message
    result = world.append("farm", "inspect", [LOT2], {"result": "pass"})
    assert (result.reason, result.status) == ("unknown-lot", "rejected")


def test_bad_signature_and_malformed_input_store_nothing_but_a_reject(world):
    good = world.reading(2, 4.0).to_json()
    tampered = dict(good, data={"temperature_c": 1.5})
    before = counts(world)
    results = world.ledger.append(
        [tampered, b"{not json", b"\xff\xfe", json.dumps(dict(good, v=3)), "[]"]
    )
    assert [r.reason for r in results] == [
        "bad-signature",
        "malformed",
        "malformed",
        "schema",
        "schema",
    ]
    assert "not UTF-8" in results[2].message
    assert "v: must be 1, or 2" in results[3].message
    assert counts(world) == before
    stored = world.store.conn.execute("SELECT reason, raw FROM rejects ORDER BY id").fetchall()
    assert [row[0] for row in stored] == [r.reason for r in results]
    assert stored[1][1] == b"{not json"


def test_reject_log_keeps_a_bounded_copy(world):
    world.ledger.append([b"x" * 100_000])
    raw = world.store.conn.execute("SELECT raw FROM rejects").fetchone()[0]
    assert len(raw) == 4096


def test_time_far_in_the_future_is_refused(world):
    future = world.sign(
        "probe", "reading", None, {"temperature_c": 3.0}, time=at((world.now - T0) / HOUR + 1)
    )
    result = world.ledger.append([future])[0]
    assert result.reason == "future-time"
    assert "clock" in result.message


def test_revoked_key_from_a_point_in_time(world):
    world.ledger.append([world.reading(1, 4.0)])
    world.ok("registrar", "revoke", None, {"subject": world.did("probe"), "from": at(3)})
    assert world.ledger.append([world.reading(2, 4.0)])[0].status == "accepted"  # before: fine
    late = world.ledger.append([world.reading(3, 4.0)])[0]
    assert (late.status, late.reason) == ("rejected", "revoked")
    again = world.append(
        "registrar", "revoke", None, {"subject": world.did("probe"), "from": at(1)}
    )
    assert again.reason == "conflict"


def test_custody_moves_only_on_receive_and_only_to_the_named_party(world):
    lot = world.store.lot_by_uri
    shipped = world.ok("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(2))
    assert lot(LOT).custodian == world.store.identity_by_did(world.did("farm")).id
    wrong = world.append("dc", "receive", [LOT], {"shipment": shipped.event_id}, time=at(3))
    assert wrong.reason == "unauthorised"
    twice = world.append("farm", "ship", [LOT], {"to": world.did("dc")}, time=at(2.5))
    assert twice.reason == "conflict" and "in transit" in twice.message
    world.ok("carrier", "receive", [LOT], {"shipment": shipped.event_id}, time=at(3))
    assert lot(LOT).custodian == world.store.identity_by_did(world.did("carrier")).id
    again = world.append("carrier", "receive", [LOT], {"shipment": shipped.event_id}, time=at(4))
    assert again.reason == "conflict"
    assert world.append("farm", "ship", [LOT], {"to": world.did("dc")}).reason == "not-custodian"


def test_ship_and_receive_in_one_batch(world):
    ship = world.sign("farm", "ship", [LOT], {"to": world.did("carrier")}, time=at(2))
    receive = world.sign("carrier", "receive", [LOT], {"shipment": ship.event_id}, time=at(3))
    assert [r.status for r in world.ledger.append([ship, receive])] == ["accepted", "accepted"]


def test_transform_consumes_inputs_and_makes_outputs(world):
    commission(world)
    result = world.ok(
        "farm",
        "transform",
        [LOT, LOT2, MIX],
        {
            "inputs": [
                {"batch": LOT, "quantity": {"value": 10, "unit": "KGM"}},
                {"batch": LOT2, "quantity": {"value": 5, "unit": "KGM"}},
            ],
            "outputs": [
                {
                    "batch": MIX,
                    "quantity": {"value": 60, "unit": "EA"},
                    "product": "Salad mix",
                    "category": "food",
                }
            ],
        },
        time=at(4),
    )
    mix = world.store.lot_by_uri(MIX)
    assert mix.product == "Salad mix" and mix.origin_event == result.index
    for uri in (LOT, LOT2, MIX):
        chain = world.store.chain_events(world.store.lot_by_uri(uri).id)
        assert chain[-1].index == result.index


def test_transform_refusals(world):
    commission(world, who="packer")  # LOT2 held by the packer
    stolen = world.append(
        "farm",
        "transform",
        [LOT2, MIX],
        {
            "inputs": [{"batch": LOT2, "quantity": {"value": 1, "unit": "KGM"}}],
            "outputs": [{"batch": MIX, "quantity": {"value": 1, "unit": "EA"}, "product": "P"}],
        },
    )
    assert stolen.reason == "not-custodian"
    no_product = world.append(
        "farm",
        "transform",
        [LOT, MIX],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
            "outputs": [{"batch": MIX, "quantity": {"value": 1, "unit": "EA"}}],
        },
    )
    assert no_product.reason == "schema" and "product is required" in no_product.message
    existing = world.append(
        "farm",
        "transform",
        [LOT, LOT2],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
            "outputs": [{"batch": LOT2, "quantity": {"value": 1, "unit": "EA"}}],
        },
    )
    assert existing.reason == "lot-exists"
    assert world.store.lot_by_uri(MIX) is None


def test_a_transform_output_cannot_be_made_again(world):
    """Regression: repeating a transform whose output an earlier transform made
    was taken for 'just commissioned' and crashed on the lineage key."""
    made = {
        "inputs": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
        "outputs": [{"batch": MIX, "quantity": {"value": 1, "unit": "EA"}, "product": "P"}],
    }
    world.ok("farm", "transform", [LOT, MIX], made)
    again = world.append("farm", "transform", [LOT, MIX], made)
    assert again.reason == "lot-exists", again


def test_a_lot_commissioned_in_the_same_batch_can_be_a_transform_output(world):
    commissioned = world.sign(
        "farm",
        "commission",
        [MIX],
        {"gtin": "09506000134352", "lot": "MIX1", "product": "Mix"},
    )
    made = world.sign(
        "farm",
        "transform",
        [LOT, MIX],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 1, "unit": "KGM"}}],
            "outputs": [{"batch": MIX, "quantity": {"value": 1, "unit": "EA"}}],
        },
    )
    results = world.ledger.append([commissioned, made])
    assert [r.status for r in results] == ["accepted", "accepted"], results


def test_commission_twice_and_recall_rules(world):
    assert commission(world, uri=LOT, lot="LOT42").reason == "lot-exists"
    world.ok("regulator", "recall", [LOT], {"reason": "Listeria", "class": "I"})
    assert world.store.lot_by_uri(LOT).recalled
    world.ok("regulator", "recall-lift", [LOT], {"reason": "Retested clean"})
    assert not world.store.lot_by_uri(LOT).recalled
    lift = world.append("regulator", "recall-lift", [LOT], {"reason": "again"})
    assert lift.reason == "conflict"


def test_atomic_batch_stores_nothing_when_one_item_is_refused(world):
    good = world.reading(2, 4.0)
    bad = world.sign("farm", "recall", [LOT], {"reason": "x", "class": "I"})
    before = counts(world)
    results = world.ledger.append([good, bad], atomic=True)
    assert [r.status for r in results] == ["aborted", "rejected"]
    assert counts(world) == before
    assert world.ledger.append([good])[0].status == "accepted"  # caches were reset properly


def test_non_atomic_batch_keeps_the_good_ones(world):
    good = [world.reading(2 + i / 10, 4.0) for i in range(3)]
    bad = world.sign("farm", "recall", [LOT], {"reason": "x", "class": "I"})
    results = world.ledger.append([good[0], bad, good[1], b"junk", good[2]])
    assert [r.status for r in results] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "accepted",
    ]
    assert [r.index for r in results if r.index is not None] == sorted(
        r.index for r in results if r.index is not None
    )


def test_every_commit_signs_a_checkpoint_of_the_whole_log(world):
    world.ledger.append([world.reading(2, 4.0)])
    body = checkpoint_body(world.store.latest_checkpoint())
    assert body.size == world.store.log_size()
    assert verify_ledger(world.store, world.log_public_key).ok


def test_large_batch_uses_parallel_verification_and_keeps_order(world):
    readings = [world.reading(2 + i / 1000, 3.0 + i % 5) for i in range(300)]
    readings[150] = world.sign(
        "probe", "reading", None, {"temperature_c": 1.0}, time=at(2), seq=readings[10].seq
    )  # a replay in the middle
    tampered = readings[200].to_json()
    tampered["data"] = {"temperature_c": 99.0}
    items = [*readings[:200], tampered, *readings[201:]]
    results = world.ledger.append(items)
    assert results[150].reason == "replay"
    assert results[200].reason == "bad-signature"
    assert sum(r.status == "accepted" for r in results) == 298
    assert verify_ledger(world.store, world.log_public_key).ok


def test_another_writer_is_noticed(engine, tmp_path, request):
    """Two Ledger objects on one database (e.g. CLI beside a running service)."""
    from provenance.store.db import Store

    where = tmp_path / "ledger.db"
    if engine == "postgres":
        where = request.getfixturevalue("postgres_url")
    world = World.create(store=Store(where))
    other = Ledger(Store(where), world.log_key, clock=lambda: world.now)
    assert other.append([world.reading(2, 4.0)])[0].status == "accepted"
    assert world.ledger.append([world.reading(3, 4.0)])[0].status == "accepted"
    assert other.append([world.reading(4, 4.0)])[0].status == "accepted"
    assert verify_ledger(world.store, world.log_public_key).ok
    other.store.close()
    world.store.close()


def test_lots_parties_and_chains_another_writer_made_are_seen(shared_world):
    """Caches (identities, lots, chain heads and ids) follow the other writer's commits."""
    from provenance.store.db import Store

    world = shared_world
    other = Ledger(Store(world.store.path), world.log_key, clock=lambda: world.now)
    assert world.append("probe", "reading", None, {"temperature_c": 4.0}, time=at(1)).ok
    spinach = LOT.replace("LOT42", "B7")
    commission = {"gtin": GTIN, "lot": "B7", "product": "Spinach"}
    made = other.append([world.sign("farm", "commission", [spinach], commission, time=at(1))])
    assert made[0].status == "accepted", made
    # This ledger loaded its caches before: it must see B7 and its chain now.
    assert world.append("farm", "ship", [spinach], {"to": world.did("dc")}, time=at(2)).ok
    world.enrol_party("mill", "processor")
    oats = LOT.replace("LOT42", "OATS")
    flour = {"gtin": GTIN, "lot": "OATS", "product": "Oats"}
    made = other.append([world.sign("mill", "commission", [oats], flour, time=at(3))])
    assert made[0].status == "accepted", made  # the other ledger sees the new party
    shipped = other.append(
        [world.sign("mill", "ship", [oats], {"to": world.did("dc")}, time=at(4))]
    )
    assert shipped[0].status == "accepted", shipped
    assert world.append("dc", "receive", [oats], {"shipment": shipped[0].event_id}, time=at(5)).ok
    assert verify_ledger(world.store, world.log_public_key, workers=1).ok
    other.store.close()


def test_next_seq_follows_the_ledger(world):
    seq = world.ledger.next_seq(world.did("probe"))
    world.ledger.append([world.reading(2, 4.0)])
    assert world.ledger.next_seq(world.did("probe")) == seq + 1


# --- epcis: imported GS1 EPCIS 2.0 events, carried verbatim

EPCIS_EVENT = {
    "type": "ObjectEvent",
    "eventTime": "2005-04-03T20:33:31.116-06:00",
    "eventTimeZoneOffset": "-06:00",
    "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
    "action": "OBSERVE",
    "bizStep": "shipping",
}


def test_epcis_event_naming_ledger_lots_is_filed_under_them(shared_world):
    world = shared_world
    world.ship_and_receive("farm", "dc", [world.lot], 2)  # the dc holds it: it may record it
    result = world.ok("dc", "epcis", [world.lot], {"event": EPCIS_EVENT})
    chain = world.store.chain_events(world.store.lot_by_uri(world.lot).id)
    assert chain[-1].index == result.index
    assert chain[-1].envelope.data == {"event": EPCIS_EVENT}
    from provenance.ledger.audit import verify_lot

    assert verify_lot(world.store, world.lot, world.log_public_key).events[-1].kind == "epcis"
    assert verify_ledger(world.store, world.log_public_key, workers=1).ok


def test_epcis_event_without_lots_goes_to_the_signers_stream_not_identity_chain(shared_world):
    world = shared_world
    first = world.ok("dc", "epcis", None, {"event": EPCIS_EVENT})
    second = world.ok("dc", "epcis", None, {"event": dict(EPCIS_EVENT, action="ADD")})
    stream = world.store.chain_by_subject(world.did("dc") + "#epcis")
    assert stream is not None and stream[3] == 2
    assert [e.index for e in world.store.chain_events(stream[0])] == [first.index, second.index]
    identity = world.store.chain_by_subject(world.did("dc"))
    assert identity[3] == 1  # still just the enrolment
    # The dc's lot events still make a verifiable bundle; the whole ledger verifies.
    world.ship_and_receive("farm", "dc", [world.lot], 2)
    from provenance.ledger.audit import verify_lot

    verify_lot(world.store, world.lot, world.log_public_key)
    assert verify_ledger(world.store, world.log_public_key, workers=1).ok


@pytest.mark.parametrize(
    ("lots", "data", "reason", "words"),
    [
        (None, {"event": []}, "schema", "data.event: must be an EPCIS 2.0 event object"),
        (None, {"event": {"eventTime": "2005-04-03T20:33:31Z"}}, "schema", "data.event.type"),
        (None, {"event": dict(EPCIS_EVENT, type="ExtendedEvent")}, "schema", "data.event.type"),
        (None, {"event": dict(EPCIS_EVENT, eventTime="yesterday")}, "schema", "eventTime"),
        (None, {"event": EPCIS_EVENT, "extra": 1}, "schema", "data.extra"),
        ([f"https://id.gs1.org/01/{GTIN}/10/NOPE"], {"event": EPCIS_EVENT}, "unknown-lot", "NOPE"),
    ],
)
def test_epcis_refusals(world, lots, data, reason, words):
    result = world.append("dc", "epcis", lots, data) if reason != "schema" else None
    if reason == "schema":
        from provenance.core.errors import ValidationError

        with pytest.raises(ValidationError, match=words.replace(".", r"\.")):
            world.sign("dc", "epcis", lots, data)
        return
    assert result.reason == reason and words in result.message


def test_epcis_is_signed_by_parties_only(world):
    result = world.append("probe", "epcis", None, {"event": EPCIS_EVENT})
    assert result.reason == "unauthorised"


def test_a_commit_is_on_disk_before_it_returns(tmp_path):
    # The ingest acknowledges a message once its commit returns, and the gateway
    # then forgets it: that commit must survive a power cut, not only a crash.
    from provenance.store.accounts.accounts import Accounts
    from provenance.store.accounts.models import HashParams
    from provenance.store.db import Store

    store = Store(tmp_path / "ledger.db")
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()
    accounts = Accounts(tmp_path / "accounts", hash_params=HashParams(1, 8, 1))
    assert accounts.conn.execute("PRAGMA synchronous").fetchone()[0] == 2
