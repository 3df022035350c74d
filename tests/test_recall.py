"""Recalls that cascade: downstream lots recalled in the same transaction, the
source of each lot's recall, lifts that end only what their source caused,
refusals that name the recall, the recall CLI, and whole-ledger verification
replaying all of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.lineage import commission, lot, ok_transform, transform
from support.world import GTIN, World, at

from provenance.cli.context import Context
from provenance.cli.main import main
from provenance.cli.recall import command as recall_command
from provenance.core.errors import ValidationError
from provenance.ledger import reasons
from provenance.ledger.audit import verify_ledger, verify_lot
from provenance.ledger.lineage import active_recalls, recall_history

ROOT = Path(__file__).resolve().parent.parent
RECALL = {"reason": "Listeria monocytogenes", "class": "I", "instructions": "Do not eat"}


@pytest.fixture
def family(world):
    """A -> B -> C (grandchild), and B -> D: a chain with a split."""
    commission(world, "A")
    commission(world, "Z")  # unrelated
    ok_transform(world, "farm", {"A": 10}, {"B": 10}, unit_out="KGM")
    ok_transform(world, "farm", {"B": 5}, {"C": 2, "D": 3}, hours=2)
    return world


def recalled(world: World) -> set[str]:
    rows = world.store.conn.execute(
        "SELECT c.subject FROM lots l JOIN chains c ON c.id = l.id WHERE l.recalled = 1"
    )
    return {row[0].rsplit("/", 1)[1] for row in rows}


def filed_under(world: World, event_index: int) -> set[str]:
    rows = world.store.conn.execute(
        "SELECT c.subject FROM links l JOIN chains c ON c.id = l.chain WHERE l.event = ?",
        (event_index,),
    )
    return {row[0].rsplit("/", 1)[1] for row in rows}


@pytest.mark.parametrize("who", ["farm", "packer", "dc", "store", "clinic", "carrier"])
@pytest.mark.parametrize("kind", ["recall", "recall-lift"])
def test_only_a_regulator_signs_recalls_and_lifts(world, who, kind):
    data = RECALL if kind == "recall" else {"reason": "fine"}
    result = world.append(who, kind, [world.lot], data)
    assert result.reason == "unauthorised" and "allowed: regulator" in result.message


def test_a_recall_cascades_to_children_and_grandchildren_in_one_commit(family):
    world = family
    size = world.store.log_size()
    result = world.ok("regulator", "recall", [lot("A")], RECALL)
    assert result.index == size  # one event …
    assert recalled(world) == {"A", "B", "C", "D"}  # … and everything downstream with it
    assert filed_under(world, result.index) == {"A", "B", "C", "D"}
    records = active_recalls(world.store, lot("C"))
    assert len(records) == 1
    record = records[0]
    assert record.source == lot("A") and not record.direct
    assert record.regulator.name == "regulator" and record.regulator.role == "regulator"
    assert (record.reason, record.recall_class, record.instructions) == (
        "Listeria monocytogenes",
        "I",
        "Do not eat",
    )
    assert record.event_id == result.event_id and record.event_index == result.index
    assert active_recalls(world.store, lot("A"))[0].direct
    assert active_recalls(world.store, lot("Z")) == []


def test_every_affected_lots_bundle_carries_the_recall(tmp_path):
    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 10}, {"B": 1})
    result = world.ok("regulator", "recall", [lot("A")], RECALL)
    report = verify_lot(world.store, lot("B"), world.log_public_key)
    assert report.events[-1].event_id == result.event_id


def test_refusals_name_the_recall(family):
    world = family
    result = world.ok("regulator", "recall", [lot("A")], RECALL)
    attempts = {
        "shipped": world.append("farm", "ship", [lot("C")], {"to": world.did("dc")}),
        "dispensed": world.append(
            "farm", "dispense", [lot("D")], {"quantity": {"value": 1, "unit": "EA"}}
        ),
        "transformed": transform(world, "farm", {"C": 1}, {"E": 1}, hours=3),
    }
    for verb, refused in attempts.items():
        assert refused.reason == "recalled", (verb, refused)
        message = refused.message
        assert f"through {lot('A')}" in message
        assert "class I recall by regulator" in message
        assert f"event {result.event_id}" in message
        assert "Listeria monocytogenes" in message
        assert f"cannot be {verb} until the recall is lifted" in message
    assert world.store.lot_by_uri(lot("E")) is None  # nothing made from a recalled lot
    direct = world.append("farm", "ship", [lot("A")], {"to": world.did("dc")})
    assert direct.reason == "recalled" and "through" not in direct.message
    assert f"{lot('A')} is recalled: class I" in direct.message


def test_a_recalled_lot_cannot_become_a_transform_output(world):
    commission(world, "A")
    commission(world, "M", unit="EA")
    world.ok("regulator", "recall", [lot("M")], RECALL)
    refused = transform(world, "farm", {"A": 1}, {"M": 1})
    assert refused.reason == "recalled" and "made into a transform output" in refused.message


def test_a_shipment_in_transit_when_the_recall_lands_can_still_be_received(family):
    world = family
    shipped = world.ok("farm", "ship", [lot("C")], {"to": world.did("dc")}, time=at(3))
    world.ok("regulator", "recall", [lot("A")], RECALL, time=at(4))
    world.ok("dc", "receive", [lot("C")], {"shipment": shipped.event_id}, time=at(5))
    assert (
        world.store.lot_by_uri(lot("C")).custodian
        == world.store.identity_by_did(world.did("dc")).id
    )
    # Holding it is allowed; passing it on is not.
    onward = world.append("dc", "ship", [lot("C")], {"to": world.did("store")}, time=at(6))
    assert onward.reason == "recalled"
    # Monitoring and inspection continue.
    world.ok("dc", "inspect", [lot("C")], {"result": "fail"}, time=at(6))


RETURN = "recall-return"


@pytest.fixture
def returned(family):
    """C reached the distribution centre before A's recall; it goes back to the farm."""
    world = family
    shipped = world.ok("farm", "ship", [lot("C")], {"to": world.did("dc")}, time=at(3))
    world.ok("dc", "receive", [lot("C")], {"shipment": shipped.event_id}, time=at(4))
    world.ok("regulator", "recall", [lot("A")], RECALL, time=at(5))
    back = world.ok(
        "dc", "ship", [lot("C")], {"to": world.did("farm"), "purpose": RETURN}, time=at(6)
    )
    world.ok("farm", "receive", [lot("C")], {"shipment": back.event_id}, time=at(7))
    world.returned = back  # type: ignore[attr-defined]
    return world


def test_a_recalled_lot_can_be_sent_back_under_the_recall(returned):
    world = returned
    farm = world.store.identity_by_did(world.did("farm")).id
    assert world.store.lot_by_uri(lot("C")).custodian == farm
    assert world.store.lot_by_uri(lot("C")).recalled  # still recalled where it now is
    # Onward shipping without the purpose is still refused, and the refusal says how.
    onward = world.append("farm", "ship", [lot("C")], {"to": world.did("store")}, time=at(8))
    assert onward.reason == "recalled" and '"purpose": "recall-return"' in onward.message
    assert verify_ledger(world.store, world.log_public_key).ok


def test_a_recall_return_carries_recalled_lots_only(family):
    world = family
    world.ok("regulator", "recall", [lot("A")], RECALL)
    refused = world.append("farm", "ship", [lot("Z")], {"to": world.did("dc"), "purpose": RETURN})
    assert refused.reason == "conflict" and f"{lot('Z')} is not recalled" in refused.message
    mixed = world.append(
        "farm", "ship", [lot("D"), lot("Z")], {"to": world.did("dc"), "purpose": RETURN}
    )
    assert mixed.reason == "conflict"
    with pytest.raises(ValidationError, match="purpose: must be one of recall-return"):
        world.sign("farm", "ship", [lot("D")], {"to": world.did("dc"), "purpose": "sale"})


def test_a_recall_return_shows_in_epcis_and_on_the_page(returned):
    from provenance.domain.custody import read_custody, unknown_party
    from provenance.exchange.epcis import lot_document

    world = returned
    document = lot_document(world.store, lot("C"), created="2026-10-21T00:00:00.000Z")
    ships = [
        event for event in document["epcisBody"]["eventList"] if event.get("bizStep") == "shipping"
    ]
    assert [event["disposition"] for event in ships] == ["in_transit", "recalled"]
    assert ships[1]["provenance:purpose"] == RETURN
    chain = world.store.chain_by_subject(lot("C"))[0]
    events = [(e.index, e.envelope) for e in world.store.chain_events(chain)]
    custody = read_custody(lot("C"), events, unknown_party)
    ships = [step for step in custody.steps if step.kind == "ship"]
    assert [step.details.get("purpose") for step in ships] == [None, RETURN]


def test_the_scan_page_says_the_lot_was_sent_back(shared_world):
    from provenance.web import create_app

    world = shared_world
    shipped = world.ok("farm", "ship", [world.lot], {"to": world.did("dc")}, time=at(3))
    world.ok("dc", "receive", [world.lot], {"shipment": shipped.event_id}, time=at(4))
    world.ok("regulator", "recall", [world.lot], RECALL, time=at(5))
    world.ok("dc", "ship", [world.lot], {"to": world.did("farm"), "purpose": RETURN}, time=at(6))
    app = create_app(
        {
            "DATABASE": str(world.store.path),
            "CLOCK": lambda: world.now,
            "LOG_PUBLIC_KEY": world.log_public_key,
            "TESTING": True,
        }
    )
    page = app.test_client().get(world.lot.removeprefix("https://id.gs1.org"))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Sent back under the recall by dc to farm" in html
    assert html.count("Shipped by farm to dc") == 1


def test_lift_ends_only_what_its_source_caused(family):
    world = family
    first = world.ok("regulator", "recall", [lot("A")], RECALL)
    second = world.ok("regulator", "recall", [lot("B")], {"reason": "Glass", "class": "II"})
    assert [r.source for r in active_recalls(world.store, lot("C"))] == [lot("A"), lot("B")]
    # C is recalled only through ancestors: lift those, not C.
    not_direct = world.append("regulator", "recall-lift", [lot("C")], {"reason": "x"})
    assert not_direct.reason == "conflict"
    assert f"recalled only through {lot('A')}, {lot('B')}" in not_direct.message
    lift = world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Retested clean"})
    assert filed_under(world, lift.index) == {"A", "B", "C", "D"}
    assert recalled(world) == {"B", "C", "D"}  # still recalled through B (and B directly)
    remaining = active_recalls(world.store, lot("C"))
    assert [(r.source, r.event_id) for r in remaining] == [(lot("B"), second.event_id)]
    history = recall_history(world.store, lot("C"))
    ended = next(r for r in history if r.event_id == first.event_id)
    assert ended.lift is not None and ended.lift.reason == "Retested clean"
    assert ended.lift.event_id == lift.event_id and ended.lift.regulator.name == "regulator"
    # A is free again: it may be shipped; C may not.
    assert world.append("farm", "ship", [lot("A")], {"to": world.did("dc")}).status == "accepted"
    assert world.append("farm", "ship", [lot("C")], {"to": world.did("dc")}).reason == "recalled"
    world.ok("regulator", "recall-lift", [lot("B")], {"reason": "Supplier cleared"})
    assert recalled(world) == set()
    assert world.append("regulator", "recall-lift", [lot("B")], {"reason": "x"}).reason == (
        "conflict"
    )


def test_a_lot_recalled_directly_and_through_an_ancestor(family):
    world = family
    world.ok("regulator", "recall", [lot("A"), lot("C")], RECALL)  # one event, two sources
    sources = sorted(r.source for r in active_recalls(world.store, lot("C")))
    assert sources == [lot("A"), lot("C")]
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "A is clean"})
    assert recalled(world) == {"C"}
    world.ok("regulator", "recall-lift", [lot("C")], {"reason": "C is clean"})
    assert recalled(world) == set()


def test_recalling_again_and_lifting_once(world):
    world.ok("regulator", "recall", [world.lot], RECALL)
    world.ok("regulator", "recall", [world.lot], {"reason": "Upgraded", "class": "I"})
    assert len(active_recalls(world.store, world.lot)) == 2
    world.ok("regulator", "recall-lift", [world.lot], {"reason": "All clear"})
    assert active_recalls(world.store, world.lot) == []
    assert not world.store.lot_by_uri(world.lot).recalled


def test_a_recall_later_in_the_same_batch_sees_the_transform_before_it(world):
    commission(world, "A")
    make = world.sign(
        "farm",
        "transform",
        [lot("A"), lot("B")],
        {
            "inputs": [{"batch": lot("A"), "quantity": {"value": 1, "unit": "KGM"}}],
            "outputs": [
                {"batch": lot("B"), "quantity": {"value": 1, "unit": "EA"}, "product": "B"}
            ],
        },
    )
    recall = world.sign("regulator", "recall", [lot("A")], RECALL)
    ship = world.sign("farm", "ship", [lot("B")], {"to": world.did("dc")})
    results = world.ledger.append([make, recall, ship])
    assert [r.status for r in results] == ["accepted", "accepted", "rejected"]
    assert results[2].reason == "recalled" and recall.event_id in results[2].message
    assert recalled(world) == {"A", "B"}


def test_another_writer_sees_the_cascade(tmp_path):
    from provenance.ledger.append import Ledger
    from provenance.store.db import Store

    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 1}, {"B": 1})
    other = Ledger(Store(world.store.path), world.log_key, clock=lambda: world.now)
    assert other.append([world.sign("farm", "inspect", [lot("B")], {"result": "pass"})])[0].ok
    world.ok("regulator", "recall", [lot("A")], RECALL)
    refused = other.append([world.sign("farm", "ship", [lot("B")], {"to": world.did("dc")})])[0]
    assert refused.reason == "recalled"


def test_whole_ledger_verify_replays_recalls_cascades_and_lifts(tmp_path):
    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 10}, {"B": 10}, unit_out="KGM")
    ok_transform(world, "farm", {"B": 5}, {"C": 2, "D": 3}, hours=2)
    for hours in (3, 4):
        world.ledger.append([world.reading(hours, 4.0)])  # readings shift log indexes
    world.ok("regulator", "recall", [lot("A")], RECALL)
    world.ok("regulator", "recall", [lot("B")], {"reason": "Glass", "class": "II"})
    world.ok("regulator", "recall-lift", [lot("A")], {"reason": "Clean"})
    world.ok("dc", "epcis", None, {"event": {"type": "ObjectEvent", "eventTime": at(5)}})
    for workers in (1, 2):
        report = verify_ledger(world.store, world.log_public_key, workers=workers)
        assert report.ok, [str(p) for p in report.problems]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            "DELETE FROM recalls WHERE lot = (SELECT id FROM chains WHERE subject LIKE '%/C')",
            "recalls table lacks",
        ),
        ("UPDATE recalls SET lift_event = 0", "recalls table holds"),
        ("UPDATE lots SET recalled = 0", "lots table holds"),
        (
            "DELETE FROM links WHERE event = (SELECT max(idx) FROM events) "
            "AND chain = (SELECT id FROM chains WHERE subject LIKE '%/C')",
            "recall, lift and EPCIS filing",
        ),
    ],
)
def test_verify_catches_edited_recall_state(tmp_path, edit, words):
    world = World.create(tmp_path)
    commission(world, "A")
    ok_transform(world, "farm", {"A": 10}, {"B": 10}, unit_out="KGM")
    ok_transform(world, "farm", {"B": 5}, {"C": 2}, hours=2)
    world.ok("regulator", "recall", [lot("A")], RECALL)
    world.store.conn.execute(edit)
    report = verify_ledger(world.store, world.log_public_key, workers=1)
    assert any(words in p.message for p in report.problems), [str(p) for p in report.problems]


def test_the_refusal_reason_is_documented():
    assert reasons.RECALLED == "recalled"
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    assert re.search(r"\| `recalled` \|", protocol)


# --- the CLI


@pytest.fixture
def cli_ledger(tmp_path):
    """A ledger made with the real CLI: keys in the keystore, as an operator has them."""
    env = {"PROVENANCE_DB": str(tmp_path / "p.db"), "PROVENANCE_KEYS": str(tmp_path / "k")}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, list(args), env=env)
        assert result.exit_code == 0, (args, result.output)
        return result.output

    run("init")
    run("party", "add", "Green Valley Farm", "--role", "producer", "--prefix", "9506000")
    agency = run("key", "new", "--out", str(tmp_path / "agency.pem")).strip()  # its own machine
    run("party", "add", "Food Agency", "--role", "regulator", "--public-key", agency)
    run("lot", "register", "--gtin", GTIN, "--lot", "A", "--product", "Wheat", "--as",
        "Green Valley Farm")  # fmt: skip
    transform_item = {
        "kind": "transform",
        "batches": [lot("A"), lot("B"), lot("C")],
        "data": {
            "inputs": [{"batch": lot("A"), "quantity": {"value": 10, "unit": "KGM"}}],
            "outputs": [
                {"batch": lot("B"), "quantity": {"value": 4, "unit": "EA"}, "product": "Bread"},
                {"batch": lot("C"), "quantity": {"value": 6, "unit": "EA"}, "product": "Rolls"},
            ],
        },
    }
    result = runner.invoke(
        main,
        ["event", "append", "--as", "Green Valley Farm"],
        input=json.dumps(transform_item),
        env=env,
    )
    assert result.exit_code == 0, result.output
    return Context(env["PROVENANCE_DB"], env["PROVENANCE_KEYS"])


def invoke(ctx: Context, *args: str) -> tuple[int, str]:
    if "Food Agency" in args:  # the regulator signs with the key file it keeps
        args = (*args, "--key", str(ctx.keys_dir.parent / "agency.pem"))
    result = CliRunner().invoke(recall_command, list(args), obj=ctx)
    return result.exit_code, result.output


def test_recall_cli_signs_with_the_regulators_key_and_prints_every_lot(cli_ledger):
    code, out = invoke(
        cli_ledger, lot("A"), "--as", "Food Agency", "--reason", "Aflatoxin", "--class", "II",
        "--instructions", "Return to store",
    )  # fmt: skip
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("recalled (class II) 3 lots; event ")
    assert lines[1] == f"  {lot('A')} · Wheat · held by Green Valley Farm"
    assert (
        lines[2] == f"  {lot('B')} · Bread · held by Green Valley Farm · 4 EA · through {lot('A')}"
    )
    assert lines[3].startswith(f"  {lot('C')} · Rolls")
    record = active_recalls(cli_ledger.store(), lot("C"))[0]
    assert record.regulator.name == "Food Agency" and record.instructions == "Return to store"
    code, out = invoke(cli_ledger, lot("B"), "--lift", "--as", "Food Agency", "--reason", "x")
    assert code == 1 and f"recalled only through {lot('A')}" in out
    code, out = invoke(
        cli_ledger, lot("A"), "--lift", "--as", "Food Agency", "--reason", "Clean", "--json"
    )
    assert code == 0, out
    lifted = json.loads(out)
    assert lifted["kind"] == "recall-lift" and len(lifted["lots"]) == 3
    assert not any(item["recalled"] for item in lifted["lots"])


def test_recall_cli_defaults_to_class_i_and_refuses_non_regulators(cli_ledger):
    code, out = invoke(cli_ledger, lot("B"), "--as", "Food Agency", "--reason", "r", "--json")
    assert code == 0 and json.loads(out)["class"] == "I"
    code, out = invoke(cli_ledger, lot("C"), "--as", "Green Valley Farm", "--reason", "r")
    assert code == 1 and "unauthorised" in out
    code, out = invoke(
        cli_ledger, lot("C"), "--lift", "--class", "I", "--as", "Food Agency", "--reason", "r"
    )
    assert code == 2 and "belong to a recall" in out
    code, out = invoke(cli_ledger, lot("NOPE"), "--as", "Food Agency", "--reason", "r")
    assert code == 1 and "unknown-lot" in out
