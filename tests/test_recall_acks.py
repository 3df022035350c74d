"""Recall acknowledgements (`recall-ack`, docs/lineage.md): signed by a holder
of a recalled lot, with what it returned and destroyed; the refusals, with
their reasons; the recall report per holder; and the audit's replay of them."""

from __future__ import annotations

import json

import pytest
from support.lineage import commission, lot, ok_transform
from support.world import at

from provenance.core.errors import NotFound, ValidationError
from provenance.ledger import reasons
from provenance.ledger.audit import verify_ledger
from provenance.ledger.lineage import Quantity
from provenance.ledger.recall_report import recall_report

RECALL = {"reason": "Listeria monocytogenes", "class": "I", "instructions": "Return to supplier"}


@pytest.fixture
def recalled(world):
    """A (100 KGM) made into B (10 EA) by the farm; A shipped to the dc, B to
    the store; A recalled (B with it, through A)."""
    commission(world, "A")
    commission(world, "Z")  # never recalled
    ok_transform(world, "farm", {"A": 10}, {"B": 10}, unit_out="EA")
    world.ship_and_receive("farm", "dc", [lot("A")], 2)
    world.ship_and_receive("farm", "store", [lot("B")], 4)
    result = world.ok("regulator", "recall", [lot("A")], RECALL, time=at(6))
    world.recall_id = result.event_id
    return world


def ack(world, who, code, **data):
    data = {"recall": world.recall_id, **data}
    return world.append(who, "recall-ack", [lot(code)], data, time=at(8))


def kg(value):
    return {"value": value, "unit": "KGM"}


def test_a_holder_acknowledges_with_what_it_returned_and_destroyed(recalled):
    world = recalled
    first = world.ok("dc", "recall-ack", [lot("A")], {"recall": world.recall_id}, time=at(7))
    assert first.status == "accepted"
    assert ack(world, "dc", "A", returned=kg(30), notes="pallet 1 back").status == "accepted"
    assert ack(world, "dc", "A", destroyed=kg(20)).status == "accepted"  # progress: several
    rows = world.store.conn.execute("SELECT count(*) FROM recall_acks").fetchone()[0]
    assert rows == 3
    assert verify_ledger(world.store, world.log_public_key).ok  # the replay agrees


def test_past_holders_and_holders_through_the_cascade_acknowledge(recalled):
    world = recalled
    assert ack(world, "farm", "A").status == "accepted"  # made it, shipped it on
    assert ack(world, "store", "B", returned={"value": 4, "unit": "EA"}).status == "accepted"


@pytest.mark.parametrize(
    ("who", "code", "data", "reason", "words"),
    [
        ("store", "A", {}, reasons.NOT_CUSTODIAN, "not a holder of"),
        ("clinic", "B", {}, reasons.NOT_CUSTODIAN, "not a holder of"),
        ("farm", "Z", {}, reasons.CONFLICT, "is not a recalled lot"),
        ("dc", "A", {"returned": kg(101)}, reasons.CONFLICT, "more than the 90 KGM"),
        ("dc", "A", {"returned": {"value": 1, "unit": "EA"}}, reasons.CONFLICT, "counted in KGM"),
    ],
)
def test_refusals_say_why(recalled, who, code, data, reason, words):
    result = ack(recalled, who, code, **data)
    assert result.status == "rejected" and result.reason == reason, result
    assert words in result.message


def test_an_unknown_recall_is_refused(recalled):
    world = recalled
    not_a_recall = world.ok(
        "farm",
        "commission",
        [lot("N")],
        {"gtin": "09506000134352", "lot": "N", "product": "N"},
        time=at(0),
    )
    for recall in ("ab" * 32, not_a_recall.event_id):
        result = world.append("dc", "recall-ack", [lot("A")], {"recall": recall}, time=at(8))
        assert result.reason == reasons.CONFLICT and "unknown recall" in result.message


def test_returned_and_destroyed_never_add_up_to_more_than_received(recalled):
    world = recalled
    assert ack(world, "dc", "A", returned=kg(60)).status == "accepted"
    # The dc received 90 KGM: the farm had made 10 of the 100 into B before shipping.
    over = ack(world, "dc", "A", returned=kg(30), destroyed=kg(1))
    assert over.reason == reasons.CONFLICT and "60 in earlier acknowledgements" in over.message
    assert ack(world, "dc", "A", destroyed=kg(30)).status == "accepted"  # exactly all of it


def test_a_lifted_recall_takes_no_acknowledgement(recalled):
    world = recalled
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "negative retest"}, time=at(7))
    result = ack(world, "dc", "A")
    assert result.reason == reasons.CONFLICT and "was lifted" in result.message


def test_an_acknowledgement_names_exactly_one_lot(recalled):
    world = recalled
    with pytest.raises(ValidationError, match="exactly one lot"):
        world.sign("dc", "recall-ack", [lot("A"), lot("B")], {"recall": world.recall_id})


def test_two_acknowledgements_in_one_batch_are_held_to_the_total(recalled):
    world = recalled
    batch = [
        world.sign(
            "dc",
            "recall-ack",
            [lot("A")],
            {"recall": world.recall_id, "returned": kg(70)},
            time=at(8),
        ),
        world.sign(
            "dc",
            "recall-ack",
            [lot("A")],
            {"recall": world.recall_id, "returned": kg(70)},
            time=at(8),
        ),
    ]
    first, second = world.ledger.append(batch)
    assert first.status == "accepted"
    assert second.reason == reasons.CONFLICT and "more than" in second.message


def test_the_report_shows_each_holder_its_acknowledgement_and_what_is_still_out(recalled):
    world = recalled
    ack(world, "dc", "A", returned=kg(30))
    ack(world, "dc", "A", destroyed=kg(20))
    report = recall_report(world.store, world.recall_id)
    assert report.recall.event_id == world.recall_id
    assert [line.uri for line in report.lots] == [lot("A"), lot("B")]
    a, b = report.lots
    assert b.through == lot("A") and a.through is None
    by_name = {line.party.name: line for line in a.holders}
    assert set(by_name) == {"farm", "dc"}
    dc = by_name["dc"]
    assert dc.holds_now and dc.acknowledged == at(8) and len(dc.acks) == 2
    assert (dc.returned, dc.destroyed) == (Quantity(30, "KGM"), Quantity(20, "KGM"))
    assert dc.held == Quantity(90, "KGM")  # 100 registered, 10 made into B
    assert dc.still_out == Quantity(40, "KGM")
    assert by_name["farm"].acknowledged is None and by_name["farm"].still_out == Quantity(0, "KGM")
    store = {line.party.name: line for line in b.holders}["store"]
    assert store.still_out == Quantity(10, "EA") and store.acknowledged is None
    totals = report.totals()
    assert totals["acknowledged"] == 1 and totals["holders"] == 4
    assert totals["recovered"] == [{"value": 50, "unit": "KGM"}]
    assert totals["still_out"] == [{"value": 10, "unit": "EA"}, {"value": 40, "unit": "KGM"}]
    # The same report by the lot's URI, and what the JSON says
    assert recall_report(world.store, lot("B")).to_json() == report.to_json()


def test_the_report_takes_what_each_holder_holds_as_given(recalled):
    world = recalled
    ack(world, "dc", "A", returned=kg(30))
    holdings = {
        (lot("A"), world.did("dc")): Quantity(35, "KGM"),
        (lot("B"), world.did("store")): None,
    }
    report = recall_report(world.store, world.recall_id, holdings=holdings)
    dc = {line.party.name: line for line in report.lots[0].holders}["dc"]
    assert dc.held == Quantity(35, "KGM") and dc.still_out == Quantity(5, "KGM")
    store = report.lots[1].holders[0]
    assert store.held is None and store.still_out is None
    assert report.totals()["still_out_unknown"] >= 1


def test_an_in_transit_receiver_is_listed(recalled):
    world = recalled
    commission(world, "C")
    world.ok("farm", "ship", [lot("C")], {"to": world.did("clinic")}, time=at(9))
    result = world.ok("regulator", "recall", [lot("C")], RECALL, time=at(10))
    report = recall_report(world.store, result.event_id)
    lines = {line.party.name: line for line in report.lots[0].holders}
    assert lines["clinic"].in_transit and not lines["clinic"].holds_now
    assert lines["farm"].holds_now


@pytest.mark.parametrize("ref", ["nothing", "ab" * 32, lot("Z"), lot("nope")])
def test_the_report_of_no_recall_is_not_found(recalled, ref):
    with pytest.raises(NotFound):
        recall_report(recalled.store, ref)


def test_the_audit_catches_an_acknowledgement_edited_in_the_table(recalled):
    world = recalled
    ack(world, "dc", "A", returned=kg(30))
    assert verify_ledger(world.store, world.log_public_key).ok
    world.store.conn.execute("UPDATE recall_acks SET returned_value = 3")
    world.store.conn.commit()
    report = verify_ledger(world.store, world.log_public_key)
    assert not report.ok and "recall_acks" in str(report.problems)


# --- the command line


def test_recall_ack_and_report_on_the_command_line(file_world, tmp_path):
    from click.testing import CliRunner
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from provenance.cli.main import main

    world = file_world
    commission(world, "A")
    world.ship_and_receive("farm", "store", [lot("A")], 2)
    recall = world.ok("regulator", "recall", [lot("A")], RECALL, time=at(6)).event_id
    pem = tmp_path / "store.pem"
    key = world.keys["store"]
    pem.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    keys = tmp_path / "keys"
    keys.mkdir()
    log_pem = world.log_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (keys / "log.pem").write_bytes(log_pem)
    base = ["--db", str(world.store.path), "--keys", str(keys)]

    def run(*args, code=0):
        result = CliRunner().invoke(main, [*base, *args])
        assert result.exit_code == code, result.output
        return result.output

    ack = ["recall", "ack", lot("A"), "--as", "store", "--key", str(pem), "--recall", recall]
    said = run(*ack, "--returned", "30 KGM", "--destroyed", "5KGM")
    assert "acknowledged recall" in said and "returned 30 KGM, destroyed 5 KGM" in said
    plain = run("recall", "ack", lot("A"), "--as", "store", "--key", str(pem))  # the one in force
    assert f"acknowledged recall {recall[:12]}" in plain
    refused = run(*ack, "--returned", "90 KGM", code=1)
    assert refused.startswith("Error: conflict:") and "more than the 100 KGM" in refused
    assert "is not a quantity" in run(*ack, "--returned", "lots", code=2)
    report = run("recall", "report", lot("A"))
    assert "store (retailer, holds it) · not notified · acknowledged" in report
    assert "returned 30 KGM · destroyed 5 KGM · still out 65 KGM" in report
    assert "farm (producer, held it)" in report and "NOT ACKNOWLEDGED" in report
    assert "1 of 2 holders acknowledged; recovered 35 KGM; still out 65 KGM" in report
    as_json = json.loads(run("recall", "report", recall, "--json"))
    assert as_json["totals"]["recovered"] == [{"value": 35, "unit": "KGM"}]
    commission(world, "Z")
    assert "was never recalled" in run("recall", "report", lot("Z"), code=1)
    assert run("recall", "report", "nonsense", code=1).startswith("Error:")
    # `provenance recall URI…` is still the recall itself
    assert "Usage" in run("recall", "--help") and "ack" in run("recall", "--help")


def test_recall_ack_without_recall_takes_the_one_in_force(two_lot_cli):
    run = two_lot_cli
    uri = "https://id.gs1.org/01/09506000134352/10/LOT42"
    refused = run("recall", "ack", uri, "--as", "Farm", code=1)
    assert "is not recalled: there is nothing to acknowledge" in refused.output


def test_an_acknowledgement_dated_before_its_recall_is_refused(recalled):
    world = recalled
    data = {"recall": world.recall_id}
    early = world.append("dc", "recall-ack", [lot("A")], data, time=at(5.5))  # recall at 6
    assert early.reason == reasons.OUT_OF_ORDER and "before the recall it answers" in early.message


def test_a_split_lots_report_and_acknowledgements_count_each_holders_share(world):
    """A 100 KGM lot split: 40 to the dc, 25 to the store (received 20, 5
    damaged), the farm keeps 35. The report's per-holder quantities are the
    ledger's holdings (docs/protocol.md §13), and a holder acknowledges at most
    what it received."""
    commission(world, "A")
    for to, value, hours in (("dc", 40, 2), ("store", 25, 3)):
        quantities = [{"batch": lot("A"), "quantity": kg(value)}]
        shipped = world.ok(
            "farm",
            "ship",
            [lot("A")],
            {"to": world.did(to), "quantities": quantities},
            time=at(hours),
        )
        data = {"shipment": shipped.event_id}
        if to == "store":
            data["quantities"] = [{"batch": lot("A"), "quantity": kg(20)}]
            data["damaged"] = [{"batch": lot("A"), "quantity": kg(5)}]
        world.ok(to, "receive", [lot("A")], data, time=at(hours + 0.5))
    world.recall_id = world.ok("regulator", "recall", [lot("A")], RECALL, time=at(6)).event_id
    report = recall_report(world.store, world.recall_id)
    held = {line.party.name: line.held for line in report.lots[0].holders}
    assert held == {"farm": kg_q(35), "dc": kg_q(40), "store": kg_q(20)}
    too_much = ack(world, "store", "A", returned=kg(21))
    assert too_much.reason == reasons.CONFLICT and "20 KGM it received" in too_much.message
    assert ack(world, "store", "A", returned=kg(20)).status == "accepted"
    assert ack(world, "dc", "A", returned=kg(30), destroyed=kg(10)).status == "accepted"
    assert verify_ledger(world.store, world.log_public_key).ok


def kg_q(value):
    return Quantity(value, "KGM")
