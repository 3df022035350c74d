"""Serial numbers (GS1 AI 21): the `serials` kind, its derived table (migration
0014_serials, both engines), drawing new serials, and `provenance serial issue|list|sheet`."""

from __future__ import annotations

import random
import subprocess

import pytest
import zxingcpp
from PIL import Image
from support.reference_event_hash import reference_hashes
from support.world import GTIN, LOT, World

from provenance.core.errors import ValidationError
from provenance.core.kinds import MAX_SERIALS_PER_EVENT
from provenance.domain.serials import ALPHABET, LENGTH, draw_serials
from provenance.ledger.audit import verify_ledger
from provenance.ledger.reasons import CONFLICT, RECALLED, UNAUTHORISED, UNKNOWN_LOT


def test_the_maker_issues_serials_and_each_is_looked_up_by_lot_and_serial(world):
    first = world.ok("farm", "serials", [LOT], {"serials": ["A1", "A2"]})
    world.ok("farm", "serials", [LOT], {"serials": ["B1"]})
    lot = world.store.lot_by_uri(LOT)
    assert world.store.serial_issue(lot.id, "A2") == first.index
    assert world.store.serial_issue(lot.id, "ZZ") is None
    assert world.store.serials_of(lot.id) == [
        ("A1", first.index),
        ("A2", first.index),
        ("B1", first.index + 1),
    ]
    assert world.store.serials_of(lot.id, after="A2") == [("B1", first.index + 1)]
    assert world.store.serial_count(lot.id) == 3
    assert world.store.issued_serials(lot.id, ["A1", "B1", "C1"]) == {"A1", "B1"}


def test_a_serial_is_issued_once_per_lot_in_one_event_or_across_events(world):
    world.ok("farm", "serials", [LOT], {"serials": ["A1"]})
    again = world.append("farm", "serials", [LOT], {"serials": ["A0", "A1"]})
    assert again.status == "rejected" and again.reason == CONFLICT
    assert "A1" in again.message and "once per lot" in again.message
    with pytest.raises(ValidationError, match="repeats serial 'C1'"):
        world.sign("farm", "serials", [LOT], {"serials": ["C1", "C1"]})
    lot = world.store.lot_by_uri(LOT)
    assert world.store.serials_of(lot.id) == [("A1", world.store.serial_issue(lot.id, "A1"))]


@pytest.mark.parametrize("who", ["packer", "dc", "clinic", "regulator"])
def test_only_the_lots_maker_issues_its_serials(world, who):
    refused = world.append(who, "serials", [LOT], {"serials": ["A1"]})
    assert refused.status == "rejected" and refused.reason in (UNAUTHORISED, "unauthorised")
    assert world.store.serial_count(world.store.lot_by_uri(LOT).id) == 0


@pytest.mark.parametrize(
    ("lots", "data", "fragment"),
    [
        ([LOT], {"serials": []}, "1 to"),
        ([LOT], {"serials": ["x" * 21]}, "at most 20"),
        ([LOT], {"serials": ["a b"]}, "not allowed"),
        ([LOT], {"serials": [".."]}, "web address"),
        ([LOT], {"serials": [7]}, "serial number"),
        ([LOT], {"serials": ["S"] * 2}, "repeats"),
        ([LOT], {"serials": [f"S{i}" for i in range(MAX_SERIALS_PER_EVENT + 1)]}, "items"),
        ([LOT, LOT.replace("LOT42", "B7")], {"serials": ["A"]}, "exactly one lot"),
        (None, {"serials": ["A"]}, "is required for serials"),
    ],
)
def test_a_bad_issue_is_refused_saying_what_is_wrong(lots, data, fragment):
    world = World.create()
    with pytest.raises(ValidationError, match=fragment):  # signing and parsing share the check
        world.sign("farm", "serials", lots, data)


def test_no_serials_for_an_unknown_or_recalled_lot(world):
    unknown = world.append("farm", "serials", [LOT.replace("LOT42", "NOPE")], {"serials": ["A"]})
    assert unknown.reason == UNKNOWN_LOT
    world.ok("regulator", "recall", [LOT], {"reason": "test", "class": "II"})
    recalled = world.append("farm", "serials", [LOT], {"serials": ["A"]})
    assert recalled.reason == RECALLED


def test_a_ledger_with_serials_verifies_and_replays_them(file_world):
    file_world.ok("farm", "serials", [LOT], {"serials": ["A1", "A2"]})
    assert verify_ledger(file_world.store, file_world.log_public_key).ok
    file_world.store.conn.execute("DELETE FROM serials WHERE serial = 'A2'")
    file_world.store.conn.commit()
    report = verify_ledger(file_world.store, file_world.log_public_key)
    assert not report.ok and "serials" in str(report.problems)


def test_drawn_serials_are_random_distinct_and_never_already_issued():
    issued = {"AAAAAAAAAA"}
    asked: list[list[str]] = []

    def lookup(drawn: list[str]) -> set[str]:
        asked.append(drawn)
        return issued & set(drawn)

    class Rigged(random.Random):
        """Draws the issued serial first, then at random."""

        calls = 0

        def choice(self, seq):
            Rigged.calls += 1
            return "A" if Rigged.calls <= LENGTH else super().choice(seq)

    drawn = draw_serials(50, lookup, Rigged(7))
    assert len(drawn) == len(set(drawn)) == 50 and not issued & set(drawn)
    assert all(len(s) == LENGTH and set(s) <= set(ALPHABET) for s in drawn)
    assert len(asked) >= 2  # the clash was drawn again
    assert draw_serials(50, lookup, random.Random(1)) != draw_serials(50, lookup, random.Random(2))
    for bad in (0, MAX_SERIALS_PER_EVENT + 1):
        with pytest.raises(ValidationError, match="serials per issue"):
            draw_serials(bad, lookup, random.Random(1))


# --- the command line


def test_issue_list_and_a_sheet_of_distinct_serials(two_lot_cli, tmp_path):
    lot = f"https://id.gs1.org/01/{GTIN}/10/LOT42"
    drawn = two_lot_cli("serial", "issue", lot, "--count", "3", "--as", "Farm").output.split()
    given = two_lot_cli("serial", "issue", lot, "--serial", "P-1", "--as", "Farm").output.split()
    assert len(drawn) == 3 and given == ["P-1"]
    listed = two_lot_cli("serial", "list", lot).output.split()
    assert listed == sorted([*drawn, "P-1"])
    again = two_lot_cli("serial", "issue", lot, "--serial", "P-1", "--as", "Farm", code=1)
    assert "Error: conflict" in again.output
    out = tmp_path / "packs.pdf"
    done = two_lot_cli("serial", "sheet", lot, "--out", str(out), "--symbology", "datamatrix")
    assert "4 labels" in done.output
    subprocess.run(
        ["pdftoppm", "-r", "200", "-gray", "-png", str(out), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    image = Image.open(tmp_path / "page-1.png")
    codes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.DataMatrix)
    serials = sorted(c.text.split("(21)")[1] for c in codes)
    assert serials == listed
    assert all(c.symbology_identifier == "]d2" for c in codes)


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["issue", "LOTURI", "--as", "Farm"], 2, "give --count N or one or more --serial S"),
        (["issue", "LOTURI", "--count", "2", "--serial", "A", "--as", "Farm"], 2, "not both"),
        (["issue", "LOTURI", "--count", "0", "--as", "Farm"], 2, "0 is not in the range"),
        (["issue", "LOTURI", "--serial", "a b", "--as", "Farm"], 1, "not allowed"),
        (["issue", "LOTURI/21/X", "--count", "2", "--as", "Farm"], 1, "names one item"),
        (
            ["issue", "https://id.gs1.org/01/09506000134352/10/NOPE", "--count", "2"],
            1,
            "commission",
        ),
        (["list", "https://example.org/nothing"], 1, "Error:"),
        (["sheet", "LOTURI", "--out", "OUT"], 1, "no serials issued"),
    ],
)
def test_bad_serial_commands_say_what_to_do(two_lot_cli, tmp_path, args, code, fragment):
    lot = f"https://id.gs1.org/01/{GTIN}/10/LOT42"
    args = [a.replace("LOTURI", lot).replace("OUT", str(tmp_path / "x.pdf")) for a in args]
    result = two_lot_cli("serial", *args, code=code)
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_world_helper_lot_is_farms():
    world = World.create()
    assert world.store.lot_by_uri(LOT) is not None


def test_serials_export_to_epcis_as_instance_commissioning_that_validates(world):
    import json

    from jsonschema import Draft7Validator

    from provenance.exchange.epcis import lot_document
    from provenance.exchange.epcis_import import find_schema
    from provenance.exchange.epcis_vocabulary import ns

    issued = world.ok("farm", "serials", [LOT], {"serials": ["A1", "B/2"]})
    document = lot_document(world.store, LOT)
    (event,) = [e for e in document["epcisBody"]["eventList"] if e.get(ns("kind")) == "serials"]
    assert event["epcList"] == [
        f"https://id.gs1.org/01/{GTIN}/21/A1",
        f"https://id.gs1.org/01/{GTIN}/21/B%2F2",
    ]
    assert event["action"] == "ADD" and event["bizStep"] == "commissioning"
    assert (
        event["ilmd"] == {"cbvmda:lotNumber": "LOT42"} and event[ns("eventId")] == issued.event_id
    )
    schema = json.loads(find_schema().read_text(encoding="utf-8"))
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    assert [e.message for e in validator.iter_errors(document)] == []
    # Every eventID, the serials' included, is what GS1's reference hasher computes.
    events = document["epcisBody"]["eventList"]
    assert [e["eventID"] for e in events] == reference_hashes(document)


def test_the_makers_new_key_after_a_rotation_issues_serials(world):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from support.world import at

    world.keys["farm2"] = Ed25519PrivateKey.generate()
    data = {"subject": world.did("farm"), "key": world.did("farm2"), "custodial": False}
    world.ok("farm", "rotate", None, data, time=at(2))
    world.ok("farm2", "serials", [LOT], {"serials": ["R1"]}, time=at(3))
    assert verify_ledger(world.store, world.log_public_key).ok  # the replay agrees
    assert world.append("farm", "serials", [LOT], {"serials": ["R2"]}, time=at(4)).reason == (
        "revoked"
    )
