"""What a scan shows: custody steps and legs, the headline state, and the
integrity checks the page makes itself (tampering in the database shows)."""

from __future__ import annotations

import pytest
from support.world import GTIN, HOUR, LOT, T0, at

from provenance.core.errors import NotFound
from provenance.domain.custody import read_custody
from provenance.ledger import lot_model as scan
from provenance.ledger.lot_view import Scanner


def readings(world, hours, temperature=3.0, **kwargs):
    world.ledger.append([world.reading(h, temperature, **kwargs) for h in hours])


def quarter_hours(start, end):
    return [start + k / 4 for k in range(int((end - start) * 4))]


@pytest.fixture
def scanner(world):
    return Scanner(clock=lambda: world.now)


def test_a_clean_lot_is_all_good(world, scanner):
    readings(world, quarter_hours(1, 20))
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(21))
    view = scanner.view(world.store, LOT)
    assert view.state == scan.OK, view.reasons
    assert view.integrity.verified
    assert view.integrity.events == view.chain_length == 3 + 76
    assert [step.kind for step in view.custody.steps] == ["commission", "attach", "detach"]
    assert view.legs[0].readings == 76
    assert view.legs[0].status.state == "ok"


def test_unknown_lot_is_not_found(world, scanner):
    with pytest.raises(NotFound, match="no lot"):
        scanner.view(world.store, f"https://id.gs1.org/01/{GTIN}/10/NOPE")


def test_legs_follow_handoffs_and_readings_land_in_their_leg(world, scanner):
    readings(world, quarter_hours(1, 10))
    world.ship_and_receive("farm", "carrier", [LOT], 10)  # ship at 10 h, receive at 11 h
    readings(world, quarter_hours(10, 11), temperature=4.0)
    readings(world, quarter_hours(11, 15))
    view = scanner.view(world.store, LOT)
    legs = [
        (r.leg.holder.name, r.leg.receiver and r.leg.receiver.name, r.readings) for r in view.legs
    ]
    assert legs == [("farm", None, 36), ("farm", "carrier", 4), ("carrier", None, 16)]
    assert view.custodian.name == "carrier"
    ship = next(step for step in view.custody.steps if step.kind == "ship")
    assert ship.counterpart.name == "carrier"


def test_excursion_beyond_tolerance_is_the_headline(world, scanner):
    readings(world, quarter_hours(1, 5))
    readings(world, quarter_hours(5, 10), temperature=12.0)  # chilled: 0–5 °C
    readings(world, quarter_hours(10, 12))
    view = scanner.view(world.store, LOT)
    assert view.state == scan.EXCURSION
    status = view.legs[0].status
    assert status.state == "tolerance-exceeded"
    assert status.excursions[0].peak_c == 12.0


def test_logger_silent_while_attached_is_a_gap(world, scanner):
    readings(world, quarter_hours(1, 5))  # then nothing for 30 days, logger still attached
    view = scanner.view(world.store, LOT)
    assert view.state == scan.GAP
    assert view.legs[-1].status.gaps[-1][1] == world.now


def test_detached_logger_is_not_expected_to_read(world, scanner):
    readings(world, quarter_hours(1, 5))
    world.ok("farm", "detach", [LOT], {"device": world.did("probe")}, time=at(6))
    assert scanner.view(world.store, LOT).state == scan.OK


def test_recall_outranks_everything_and_lift_clears_it(world, scanner):
    readings(world, quarter_hours(5, 10), temperature=12.0)
    data = {"reason": "Listeria", "class": "I", "instructions": "Return it"}
    world.ok("regulator", "recall", [LOT], data, time=at(20))
    view = scanner.view(world.store, LOT)
    assert view.state == scan.RECALLED
    assert view.reasons == ("Listeria",)
    assert scan.EXCURSION in view.warnings
    assert view.active_recalls[0].instructions == "Return it"
    world.ok("regulator", "recall-lift", [LOT], {"reason": "retested clean"}, time=at(30))
    view = scanner.view(world.store, LOT)
    assert view.state == scan.EXCURSION
    assert [record.active for record in view.recalls] == [False]
    assert view.recalls[0].lift.reason == "retested clean"


def transform(world, inputs, output, time):
    quantity = {"value": 1, "unit": "KGM"}
    world.ok(
        "farm",
        "transform",
        [*inputs, output],
        {
            "inputs": [{"batch": uri, "quantity": quantity} for uri in inputs],
            "outputs": [{"batch": output, "quantity": quantity, "product": "Mix"}],
        },
        time=time,
    )


def test_a_recall_of_an_ingredient_shows_on_what_was_made_from_it(world, scanner):
    other = f"https://id.gs1.org/01/{GTIN}/10/LOT99"
    world.ok("farm", "commission", [other], {"gtin": GTIN, "lot": "LOT99", "product": "Chard"})
    mix = f"https://id.gs1.org/01/{GTIN}/10/MIX1"
    transform(world, [LOT, other], mix, at(2))
    # LOT must be kept at 0–5 °C and no logger read on it: the mix is not "all good"
    before = scanner.view(world.store, mix)
    assert before.state == scan.UNMONITORED
    assert [(i.path, i.state) for i in before.inherited] == [(("Kale",), scan.UNMONITORED)]
    world.ok("regulator", "recall", [LOT], {"reason": "Listeria", "class": "I"}, time=at(5))
    world.ok("regulator", "recall", [other], {"reason": "Glass", "class": "II"}, time=at(6))
    view = scanner.view(world.store, mix)
    assert view.state == scan.RECALLED
    assert [(r.source, r.direct) for r in view.active_recalls] == [(LOT, False), (other, False)]
    assert view.reasons == ("Listeria", "Glass")
    # Lifting one ingredient's recall leaves the other in force.
    world.ok("regulator", "recall-lift", [LOT], {"reason": "retested"}, time=at(7))
    view = scanner.view(world.store, mix)
    assert view.state == scan.RECALLED
    assert [r.source for r in view.active_recalls] == [other]


def test_expired_by_the_clock(world):
    world.ok(
        "farm",
        "commission",
        [f"https://id.gs1.org/01/{GTIN}/10/OLD"],
        {"gtin": GTIN, "lot": "OLD", "product": "Milk", "expiry": "2026-09-25"},
        time=at(0),
    )
    uri = f"https://id.gs1.org/01/{GTIN}/10/OLD"
    before = Scanner(clock=lambda: T0 + 24 * HOUR).view(world.store, uri)
    after = Scanner(clock=lambda: T0 + 5 * 24 * HOUR).view(world.store, uri)
    assert before.state == scan.OK
    assert after.state == scan.EXPIRED
    assert after.reasons == ("expired on 2026-09-25",)


def test_new_events_are_read_incrementally_and_change_the_view(world, scanner):
    readings(world, quarter_hours(1, 3))
    first = scanner.view(world.store, LOT)
    assert scanner.view(world.store, LOT) is first  # nothing changed: the same view
    readings(world, quarter_hours(3, 4))
    second = scanner.view(world.store, LOT)
    assert second is not first
    assert second.integrity.events == first.integrity.events + 4
    assert second.integrity.verified


def test_a_forged_signature_in_the_database_is_caught(shared_world):
    world = shared_world
    readings(world, quarter_hours(1, 3))
    row = world.store.conn.execute("SELECT idx, sig FROM events WHERE kind = 4 LIMIT 1").fetchone()
    forged = bytes([row[1][0] ^ 1]) + row[1][1:]
    world.store.conn.execute("UPDATE events SET sig = ? WHERE idx = ?", (forged, row[0]))
    view = Scanner(clock=lambda: world.now).view(world.store, LOT)
    assert view.state == scan.UNVERIFIED
    assert view.integrity.signatures_valid == view.integrity.events - 1
    assert len(view.integrity.bad_signatures) == 1
    assert "1 signatures do not verify" in view.reasons


def test_an_edited_event_breaks_the_chain(shared_world):
    world = shared_world
    readings(world, quarter_hours(1, 3))
    world.store.conn.execute(
        "UPDATE events SET data = ? WHERE kind = 4 AND idx = "
        "(SELECT min(idx) FROM events WHERE kind = 4)",
        ('{"temperature_c":3.5}',),
    )
    view = Scanner(clock=lambda: world.now).view(world.store, LOT)
    assert view.state == scan.UNVERIFIED
    assert not view.integrity.chain_intact


def test_a_checkpoint_signed_by_another_key_is_not_trusted(world):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    view = Scanner(log_public_key=other, clock=lambda: world.now).view(world.store, LOT)
    assert view.state == scan.UNVERIFIED
    assert not view.integrity.included
    assert any("log does not check out" in p for p in view.integrity.problems)
    trusted = Scanner(log_public_key=world.log_public_key, clock=lambda: world.now)
    assert trusted.view(world.store, LOT).integrity.verified


def test_custody_of_a_transformed_lot(world):
    made = f"https://id.gs1.org/01/{GTIN}/10/MIX1"
    quantity = {"value": 10, "unit": "KGM"}
    world.ok(
        "farm",
        "transform",
        [LOT, made],
        {
            "inputs": [{"batch": LOT, "quantity": quantity}],
            "outputs": [{"batch": made, "quantity": quantity, "product": "Kale mix"}],
        },
        time=at(5),
    )
    scanner = Scanner(clock=lambda: world.now)
    output = scanner.view(world.store, made)
    assert output.custody.producer.name == "farm"
    assert [i["batch"] for i in output.custody.inputs] == [LOT]
    assert output.custody.steps[0].details["role"] == "output"
    source = scanner.view(world.store, LOT)
    assert [o["batch"] for o in source.custody.outputs] == [made]


def test_read_custody_skips_readings_and_names_unknown_signers(world):
    envelope = world.reading(1, 3.0)
    custody = read_custody(LOT, [(0, envelope)], lambda did: None)  # type: ignore[arg-type,return-value]
    assert custody.steps == () and custody.legs == ()


def test_a_hold_by_a_rule_is_the_headline_until_released(world, scanner):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    world.keys["rules"] = Ed25519PrivateKey.generate()
    rules = {"subject": world.did("rules"), "type": "rules", "name": "rules"}
    world.ok("registrar", "enrol", None, rules)
    hold = {"rule": "vaccine-excursion", "reason": "3 h at 12 °C, tolerated: 1 h"}
    world.ok("rules", "hold", [LOT], hold, time=at(3))
    view = scanner.view(world.store, LOT)
    assert view.state == scan.HELD
    assert view.reasons == ("3 h at 12 °C, tolerated: 1 h",)
    assert [h.rule for h in view.holds] == ["vaccine-excursion"]
    assert view.custody.steps[-1].details == hold
    world.ok("regulator", "release", [LOT], {"reason": "Stability data"}, time=at(4))
    view = scanner.view(world.store, LOT)
    # no reading on it yet: released, but its temperature is not known
    assert view.state == scan.UNMONITORED and view.holds == ()
