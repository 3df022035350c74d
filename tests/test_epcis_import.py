"""Tests for provenance.exchange.epcis_import and `provenance import epcis`: EPCIS 2.0 documents in,
one signed `epcis` envelope per event, and back out through the export unchanged.

Every official example in ../shared/conformance/gs1-epcis/examples (47 documents and the 5
bare events in schema-test/) is validated, imported into a fresh ledger, exported and
compared, and imported again as duplicates; and each file goes through `provenance import
epcis` itself (the CLI's own JSON reading, which keeps the last of a repeated member and
says so). Those tests skip when ../shared is absent; the rules (times, lots, eventIDs,
contexts, duplicates, all-or-nothing, repeated members) and the CLI run everywhere on
documents built here, with the schema shipped in provenance/schemas/epcis.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.paths import conformance
from support.world import GTIN, LOT, World

from provenance.cli.context import Context
from provenance.cli.exchange import export_epcis, import_group
from provenance.cli.main import main
from provenance.core import gs1
from provenance.core.errors import ValidationError
from provenance.core.jcs import canonicalize, parse_json
from provenance.core.kinds import epcis_stream
from provenance.exchange import epcis_import
from provenance.exchange.epcis import epcis_events, write_ledger_document
from provenance.exchange.epcis_import import (
    DuplicateMember,
    Prepared,
    content_key,
    epcis_validator,
    event_lots,
    find_schema,
    import_events,
    lot_of,
    parse_document,
    prepare,
    schema_problems,
    utc_time,
)
from provenance.exchange.epcis_vocabulary import EPCIS_CONTEXT, LedgerEvent
from provenance.exchange.event_hash import document_events, event_hash, ignore_fields

SCHEMA = "gs1-epcis/schema/EPCIS-JSON-Schema.json"
EXAMPLES = "gs1-epcis/examples"
CREATED = "2026-10-21T00:00:00.000Z"
LOT2 = gs1.lot_uri(GTIN, "B7")
# LOT42 of GTIN 09506000134352 as an EPC class URN (company prefix 9506000, item 013435)
LGTIN_URN = "urn:epc:class:lgtin:9506000.013435.LOT42"
ELSEWHERE = "urn:epc:class:lgtin:4012345.012345.998877"  # a lot this ledger does not have
PO = "urn:epcglobal:cbv:bt:0614141000005:PO-1"


def example_files() -> list[Path]:
    root = conformance(EXAMPLES)
    return sorted(path for path in root.rglob("*") if path.suffix in (".json", ".jsonld"))


def _example_ids() -> list[str]:
    from support.paths import SHARED

    root = SHARED / EXAMPLES
    if not root.exists():
        return ["(absent)"]
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.suffix in (".json", ".jsonld")
    )


@pytest.fixture(scope="module")
def validator():
    return epcis_validator(json.loads(find_schema().read_text(encoding="utf-8")))


def document(*events: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return {
        "@context": context or [EPCIS_CONTEXT, {"example": "http://ns.example.com/epcis/"}],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-09-01T00:00:00Z",
        "epcisBody": {"eventList": list(events)},
    }


def shipping(*classes: str, time: str = "2026-09-21T10:00:00.000+02:00", **extra: Any):
    event = {
        "type": "ObjectEvent",
        "eventTime": time,
        "eventTimeZoneOffset": time[-6:] if time[-6] in "+-" else "+00:00",
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "quantityList": [{"epcClass": c, "quantity": 12.5, "uom": "KGM"} for c in classes],
        "bizTransactionList": [{"type": "po", "bizTransaction": PO}],
    }  # fmt: skip
    return event | extra


def exported(world: World, **filters: Any) -> dict[str, Any]:
    buffer = io.StringIO()
    write_ledger_document(world.store, buffer, created=CREATED, **filters)
    return json.loads(buffer.getvalue())


def imported_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of an export that came from imports (ours all carry provenance:kind)."""
    return [e for e in document["epcisBody"]["eventList"] if "provenance:kind" not in e]


def strip(event: dict[str, Any], added: tuple[str, ...]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key not in added}


# --- pure: times, lots, preparing


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2005-04-03T20:33:31.116000-06:00", "2005-04-04T02:33:31.116000Z"),
        ("2005-04-04T20:33:31.116-06:00", "2005-04-05T02:33:31.116Z"),
        ("2020-01-14T00:00:00+01:00", "2020-01-13T23:00:00Z"),
        ("2019-04-02T13:05:00.000Z", "2019-04-02T13:05:00.000Z"),
        ("2019-04-02T13:05:00.1234567891234Z", "2019-04-02T13:05:00.123456789Z"),
        ("2000-01-01T00:30:00+14:00", "1999-12-31T10:30:00Z"),
    ],
)
def test_utc_time_keeps_the_instant(given, expected):
    assert utc_time(given) == expected


@pytest.mark.parametrize(
    "bad",
    ["2005-04-03T20:33:31", "2005-02-30T00:00:00Z", "yesterday", None, "9999-12-31T23:00:00-02:00"],
)
def test_utc_time_refuses_what_is_no_instant(bad):
    with pytest.raises(ValidationError, match="eventTime"):
        utc_time(bad)


@pytest.mark.parametrize(
    ("identifier", "lot"),
    [
        (LGTIN_URN, LOT),
        (LOT, LOT),
        (f"https://example.com/dl/01/{GTIN}/10/LOT42?17=261231", LOT),
        (f"https://id.gs1.org/01/{GTIN}/10/LOT42/21/1234", LOT),  # an item of the lot
        (f"https://id.gs1.org/gtin/{GTIN[1:]}/lot/LOT42", LOT),  # short names, GTIN-13
        (f"https://id.gs1.org/01/{GTIN}/22/2A/10/LOT42", LOT),  # with a CPV
        ("https://id.gs1.org/01/09520123456788/10/ABC%2B1", gs1.lot_uri("09520123456788", "ABC+1")),
        ("urn:epc:id:sgtin:0614141.107346.2018", None),  # an item, no lot
        ("urn:epc:id:sscc:0614141.1234567890", None),
        (f"https://id.gs1.org/01/{GTIN}", None),
        ("https://id.gs1.org/01/09506000134353/10/LOT42", None),  # bad check digit
        ("urn:epc:idpat:sgtin:4012345.044444.*", None),
        (42, None),
    ],
)  # fmt: skip
def test_lot_of(identifier, lot):
    assert lot_of(identifier) == lot


def test_event_lots_come_from_quantity_and_epc_lists():
    event = {
        "quantityList": [{"epcClass": LGTIN_URN}, {"epcClass": "urn:epc:idpat:sgtin:1.2.*"}],
        "childEPCs": [f"https://id.gs1.org/01/{GTIN}/10/B7/21/9"],
        "parentID": "urn:epc:id:sscc:0614141.1234567890",
        "outputQuantityList": [{"epcClass": LOT, "quantity": 1}],
    }
    assert event_lots(event) == tuple(sorted((LOT, LOT2)))
    assert event_lots({"epcList": []}) == ()


def test_prepare_adds_the_event_hash_as_id_only_when_absent():
    with_id = shipping(LOT, eventID="urn:uuid:374d95fc-9457-4a51-bd6a-0bba133845a8")
    without = shipping(LOT2)
    doc = document(with_id, without)
    first, second = prepare(doc)
    assert first.event["eventID"] == with_id["eventID"] and "eventID" not in first.added
    assert second.event["eventID"] == event_hash(without, context=doc["@context"])
    assert "eventID" in second.added
    assert (first.position, second.position) == (0, 1)
    assert first.time == "2026-09-21T08:00:00.000Z"
    assert first.lots == (LOT,) and second.lots == (LOT2,)
    assert "eventID" not in without  # the input is not changed


def test_prepare_embeds_a_document_context_that_defines_terms():
    event = shipping(LOT, **{"example:myField": "x"})
    (prepared,) = prepare(document(event))
    assert prepared.event["@context"] == [
        EPCIS_CONTEXT,
        {"example": "http://ns.example.com/epcis/"},
    ]
    assert prepared.added == ("eventID", "@context")
    # a context that only names URLs defines nothing the export does not repeat
    (plain,) = prepare(document(shipping(LOT), context=EPCIS_CONTEXT))
    assert "@context" not in plain.event
    # an event's own context comes after the document's, each item once
    own = shipping(LOT, **{"@context": [EPCIS_CONTEXT, {"ex2": "urn:x:"}]})
    (merged,) = prepare(document(own))
    assert merged.event["@context"] == [
        EPCIS_CONTEXT,
        {"example": "http://ns.example.com/epcis/"},
        {"ex2": "urn:x:"},
    ]
    assert merged.added == ("eventID", "@context")  # the event's own context, extended


def test_prepare_reads_query_documents_and_bare_events():
    event = shipping(LOT, eventID="ni:///sha-256;00?ver=CBV2.0")
    query = {
        "@context": [EPCIS_CONTEXT],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-09-01T00:00:00Z",
        "epcisBody": {
            "queryResults": {"queryName": "SimpleEventQuery", "resultsBody": {"eventList": [event]}}
        },
    }
    (from_query,) = prepare(query)
    assert from_query.event == event
    bare = event | {"@context": EPCIS_CONTEXT}
    (alone,) = prepare(bare)
    assert alone.event == bare and alone.added == ()
    with pytest.raises(ValidationError, match=r"eventList\[0\].eventTime"):
        prepare(document(shipping(LOT) | {"eventTime": "soon"}))


def test_content_key_is_the_stored_data_hash():
    event = shipping(LOT)
    assert content_key(event) == content_key(copy.deepcopy(event))
    assert content_key(event) != content_key(shipping(LOT2))
    assert content_key({"a": 1.0}) == content_key({"a": 1})  # JCS numbers


# --- into the ledger


def test_import_files_events_under_the_lots_the_ledger_has(world):
    unknown = gs1.lot_uri(GTIN, "ELSEWHERE")
    doc = document(shipping(LGTIN_URN, unknown), shipping(unknown))
    report = import_events(world.ledger, world.keys["farm"], prepare(doc))
    assert report.ok and report.count("stored") == 2
    named, elsewhere = report.outcomes
    assert named.lots == (LOT,) and elsewhere.lots == ()
    first = world.store.find_event(bytes.fromhex(named.ledger_id))
    assert first.envelope.kind == "epcis" and first.envelope.lots == (LOT,)
    assert first.envelope.signer == world.did("farm")
    assert first.envelope.data["event"] == prepare(doc)[0].event
    assert first.envelope.time == "2026-09-21T08:00:00.000Z"
    lot_chain = world.store.chain_by_subject(LOT)[0]
    assert named.ledger_id in [s.envelope.event_id for s in world.store.chain_events(lot_chain)]
    stream = world.store.chain_by_subject(epcis_stream(world.did("farm")))
    assert [s.envelope.event_id for s in world.store.chain_events(stream[0])] == [
        elsewhere.ledger_id
    ]


def test_the_same_event_again_is_a_duplicate_whoever_imports_it(world):
    doc = document(shipping(LOT), shipping(LOT, time="2026-09-22T10:00:00Z"))
    first = import_events(world.ledger, world.keys["farm"], prepare(doc))
    size = world.store.log_size()
    again = import_events(world.ledger, world.keys["packer"], prepare(doc))
    assert [o.status for o in again.outcomes] == ["duplicate", "duplicate"]
    assert [o.ledger_id for o in again.outcomes] == [o.ledger_id for o in first.outcomes]
    assert world.store.log_size() == size
    # twice in one document: stored once
    twice = document(shipping(LOT2), shipping(LOT2))
    report = import_events(world.ledger, world.keys["farm"], prepare(twice))
    assert [o.status for o in report.outcomes] == ["stored", "duplicate"]
    assert report.outcomes[0].ledger_id == report.outcomes[1].ledger_id
    assert world.store.log_size() == size + 1


def test_an_error_declaration_is_not_a_duplicate_of_its_event(world):
    event = shipping(LOT, eventID="urn:uuid:11111111-2222-3333-4444-555555555555")
    declared = event | {
        "errorDeclaration": {"declarationTime": "2026-09-23T00:00:00Z", "reason": "incorrect_data"}
    }
    report = import_events(world.ledger, world.keys["farm"], prepare(document(event, declared)))
    assert [o.status for o in report.outcomes] == ["stored", "stored"]


def test_import_is_all_or_nothing(world):
    size = world.store.log_size()
    future = shipping(LOT, time="2099-01-01T00:00:00Z")
    report = import_events(
        world.ledger, world.keys["farm"], prepare(document(shipping(LOT), future))
    )
    assert not report.ok
    assert [o.status for o in report.outcomes] == ["aborted", "rejected"]
    assert "future-time" in report.outcomes[1].message
    assert world.store.log_size() == size
    huge = shipping(LOT, **{"example:blob": "x" * 70_000})
    report = import_events(world.ledger, world.keys["farm"], prepare(document(shipping(LOT), huge)))
    assert [o.status for o in report.outcomes] == ["aborted", "rejected"]
    assert "65536" in report.outcomes[1].message
    assert world.store.log_size() == size


def test_only_parties_may_import(world):
    report = import_events(world.ledger, world.keys["probe"], prepare(document(shipping(LOT))))
    assert not report.ok and "unauthorised" in report.outcomes[0].message


def test_imported_events_export_verbatim(world):
    doc = document(shipping(LOT, **{"example:note": "cold"}))
    report = import_events(world.ledger, world.keys["farm"], prepare(doc))
    (prepared,) = prepare(doc)
    stored = world.store.find_event(bytes.fromhex(report.outcomes[0].ledger_id)).envelope
    (event,) = epcis_events([LedgerEvent(stored, (LOT,))])
    assert event == prepared.event
    assert not any(key.startswith("provenance:") for key in event)
    whole = exported(world)
    assert prepared.event in whole["epcisBody"]["eventList"]
    assert prepared.event in exported(world, lot=LOT)["epcisBody"]["eventList"]
    assert prepared.event not in exported(world, until_us=0)["epcisBody"]["eventList"]


# --- the official examples


def _import_and_export(path: Path, validator) -> tuple[World, dict, list[Prepared], dict]:
    original = json.loads(path.read_text(encoding="utf-8"))
    count, problems = schema_problems(validator, original)
    assert count == 0, problems
    world = World.create()
    prepared = prepare(original)
    report = import_events(world.ledger, world.keys["packer"], prepared)
    assert report.ok, [(o.status, o.message) for o in report.outcomes]
    return world, original, prepared, exported(world)


@pytest.mark.shared
def test_all_52_examples_are_here():
    files = example_files()
    assert len(files) == 52
    assert len([f for f in files if f.parent.name == "schema-test"]) == 5


@pytest.mark.shared
@pytest.mark.parametrize("name", _example_ids())
def test_official_example_round_trips(name, validator):
    path = conformance(EXAMPLES) / name
    world, original, prepared, export = _import_and_export(path, validator)
    # the export validates, with format checks on
    count, problems = schema_problems(validator, export)
    assert count == 0, problems
    events = original if original.get("type") not in epcis_import.DOCUMENT_TYPES else None
    originals = [events] if events else document_events(original)
    context = None if events else original.get("@context")
    ignore = [] if events else ignore_fields(original)
    back = imported_events(export)
    unique = {canonicalize(item.event): item for item in prepared}
    assert len(back) == len(unique)  # each event once, a repeat in the document too
    for item, event in zip(prepared, originals, strict=True):
        (found,) = [e for e in back if canonicalize(e) == canonicalize(item.event)]
        # the same fields and values, but for exactly what the import added
        assert canonicalize(strip(found, item.added)) == canonicalize(event)
        # and the same meaning: the CBV event hash under each document's context
        assert event_hash(found, context=export["@context"]) == event_hash(
            event, context=context, ignore=ignore
        )
    # importing it again changes nothing
    size = world.store.log_size()
    again = import_events(world.ledger, world.keys["farm"], prepare(original))
    assert {o.status for o in again.outcomes} == {"duplicate"}
    assert world.store.log_size() == size


@pytest.mark.shared
def test_all_examples_into_one_ledger(validator):
    world = World.create()
    counts = {"stored": 0, "duplicate": 0}
    everything = []
    for path in example_files():
        original = json.loads(path.read_text(encoding="utf-8"))
        prepared = prepare(original)
        report = import_events(world.ledger, world.keys["packer"], prepared)
        if not report.ok and path.name == "Extended-Event.json":
            continue  # see test_official_example_round_trips
        assert report.ok, (path.name, [o.message for o in report.outcomes])
        for status in counts:
            counts[status] += report.count(status)
        everything += [item.event for item in prepared]
    export = exported(world)
    assert schema_problems(validator, export)[0] == 0
    back = {canonicalize(e) for e in imported_events(export)}
    assert {canonicalize(e) for e in everything} == back
    assert counts["stored"] == len(back)
    # identical events recur across the examples (the 9.6.1 pair appears in four documents)
    assert counts["duplicate"] >= 5


# --- reading the JSON: a repeated member keeps its last value, and is reported


def test_a_repeated_member_keeps_its_last_value_and_is_reported():
    text = (
        '{"type": "EPCISDocument", "epcisBody": {"eventList": ['
        '{"eventID": "first", "type": "ObjectEvent", "eventID": "last", "action": "ADD"},'
        '{"type": "ObjectEvent", "readPoint": {"id": "a", "id": "b", "id": "c"}}]},'
        '"schemaVersion": "1.2", "schemaVersion": "2.0"}'
    )
    value, repeats = parse_document(text.encode(), max_depth=64)
    events = value["epcisBody"]["eventList"]
    assert events[0]["eventID"] == "last" and events[1]["readPoint"] == {"id": "c"}
    assert value["schemaVersion"] == "2.0"
    assert value == json.loads(text)  # what JSON.parse, Python, Jackson and JSON-LD read
    assert repeats == [
        DuplicateMember("(document)", None, "schemaVersion", 2, "2.0"),
        DuplicateMember("epcisBody.eventList[0]", 0, "eventID", 2, "last"),
        DuplicateMember("epcisBody.eventList[1].readPoint", 1, "id", 3, "c"),
    ]
    assert repeats[1].warning() == (
        'event 0 (epcisBody.eventList[0]): member "eventID" appears 2 times; the last is used:'
        ' "last"'
    )
    assert type(events[0]) is dict  # plain values, nothing of the parser carried along
    # a bare event: the whole input is event 0
    _, (bare,) = parse_document('{"type": "ObjectEvent", "action": "ADD", "action": "DELETE"}', 64)
    assert (bare.event, bare.path, bare.kept) == (0, "(document)", "DELETE")


def test_repeat_warnings_are_in_document_order_and_escape_what_they_quote():
    quoted = json.dumps("\x1b[31m\u202eevil")  # the JSON text escapes them; the value has them
    events = [{"type": "ObjectEvent"} for _ in range(12)]
    text = json.dumps(document(*events))
    text = text.replace('{"type": "ObjectEvent"}', '{"type": "ObjectEvent", "type": "X"}')
    text = text.replace('"creationDate"', f'{quoted}: 1, {quoted}: {quoted}, "creationDate"')
    _, repeats = parse_document(text, max_depth=64)
    assert [r.event for r in repeats] == [None, *range(12)]  # [2] before [10]
    line = repeats[0].warning()
    assert line.isascii() and line.isprintable(), line
    assert '"\\u001b[31m\\u202eevil" appears 2 times' in line


def test_cli_tells_ten_repeats_and_counts_the_rest(cli, tmp_path):
    source = tmp_path / "many.jsonld"
    events = [shipping(LOT, time=f"2026-09-21T10:{i:02d}:00Z") for i in range(25)]
    text = json.dumps(document(*events)).replace(
        '"action": "OBSERVE"', '"action": "ADD", "action": "OBSERVE"'
    )
    source.write_text(text, encoding="utf-8")
    result = cli("epcis", str(source), "--as", "Green Valley Farm", command=import_group)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 11
    assert warnings[-1].endswith("15 more objects repeat a member; the last of each is used")
    assert "event 9 (epcisBody.eventList[9])" in warnings[9]
    assert result.stdout.count("stored\t") == 25


def test_signed_envelopes_stay_strict_about_repeats():
    """Only the EPCIS import tolerates repeated members; the envelope parser refuses them."""
    text = '{"v": 1, "kind": "reading", "kind": "recall"}'
    with pytest.raises(ValidationError, match="duplicate key 'kind'"):
        parse_json(text)
    assert parse_document(text, max_depth=64)[1][0].name == "kind"


@pytest.mark.parametrize(
    "text, reason",
    [
        (b'{"a": 1, "a": NaN}', "NaN is not valid JSON"),
        (b'{"a": 1, "a": 2', "malformed JSON"),
        (b'{"a": 1, "a": "\xff"}', "not UTF-8"),
        (b'{"a": 1, "a": ' + b"[" * 70 + b"]" * 70 + b"}", "nested deeper than 64"),
        (b'{"a": 1, "a": 1e400}', "too large"),
    ],
)
def test_repeats_excuse_nothing_else(text, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_document(text, max_depth=64)


# --- the command line


@pytest.fixture
def cli(tmp_path):
    db, keys = str(tmp_path / "p.db"), str(tmp_path / "keys")
    runner = CliRunner()

    def run(*args: str, code: int = 0, command=main, input=None):
        if command is main:
            result = runner.invoke(main, ["--db", db, "--keys", keys, *args], input=input)
        else:
            context = Context(db, keys)
            try:
                result = runner.invoke(command, list(args), obj=context, input=input)
            finally:
                context.close()  # what the main group does when a command ends
        assert result.exit_code == code, (args, result.output, result.exception)
        return result

    run("init")
    run("party", "add", "Green Valley Farm", "--role", "producer", "--prefix", "9506000")
    run("lot", "register", "--gtin", GTIN, "--lot", "LOT42", "--product", "Kale",
        "--as", "Green Valley Farm")  # fmt: skip
    return run


def test_cli_imports_and_reports_each_event(cli, tmp_path):
    source = tmp_path / "partner.jsonld"
    source.write_text(json.dumps(document(shipping(LGTIN_URN), shipping(ELSEWHERE))))
    result = cli("epcis", str(source), "--as", "Green Valley Farm", command=import_group)
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(line[0], line[3]) for line in lines] == [("stored", LOT), ("stored", "-")]
    assert all(line[1].startswith("ni:///sha-256;") and len(line[2]) == 64 for line in lines)
    assert "2 events: 2 stored, 0 duplicates" in result.stderr
    again = cli("epcis", str(source), "--as", "Green Valley Farm", command=import_group)
    assert [line.split("\t")[0] for line in again.stdout.splitlines()] == ["duplicate"] * 2
    # and back out: the lot's export holds the imported event
    out = tmp_path / "lot.jsonld"
    cli("--batch", LOT, "--out", str(out), command=export_epcis)
    events = json.loads(out.read_text())["epcisBody"]["eventList"]
    assert lines[0][1] in [e["eventID"] for e in events]


def test_cli_lists_the_first_schema_problems(cli, tmp_path):
    bad = document(shipping(LOT, bizStep="not a uri"), shipping(LOT) | {"action": "SOMETIMES"})
    source = tmp_path / "bad.jsonld"
    source.write_text(json.dumps(bad))
    result = cli("epcis", str(source), "--as", "Green Valley Farm", code=1, command=import_group)
    # the schema reports the bad action twice: no `anyOf` branch, and not in the enum
    assert "is not valid EPCIS 2.0 (3 schema problems; all):" in result.output
    assert "epcisBody.eventList[0].bizStep: 'not a uri' is not a 'uri'" in result.output
    assert "epcisBody.eventList[1].action: 'SOMETIMES' is not one of" in result.output
    source.write_text("{not json")
    result = cli("epcis", str(source), "--as", "Green Valley Farm", code=1, command=import_group)
    assert "is not JSON" in result.output


def test_cli_refuses_unknown_parties_and_refused_events(cli, tmp_path):
    source = tmp_path / "doc.jsonld"
    source.write_text(json.dumps(document(shipping(LOT, time="2099-01-01T00:00:00Z"))))
    result = cli("epcis", str(source), "--as", "Nobody", code=1, command=import_group)
    assert "no party named 'Nobody'" in result.output
    result = cli("epcis", str(source), "--as", "Green Valley Farm", code=1, command=import_group)
    assert "rejected: future-time" in result.stderr
    assert "nothing stored (1 rejected)" in result.stderr


def test_cli_without_a_schema_is_a_usage_error(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(epcis_import, "PACKAGED_SCHEMA", tmp_path / "absent.json")
    monkeypatch.delenv(epcis_import.SCHEMA_ENV, raising=False)
    source = tmp_path / "doc.jsonld"
    source.write_text(json.dumps(document(shipping(LOT))))
    result = cli("epcis", str(source), "--as", "Green Valley Farm", code=2, command=import_group)
    assert "no EPCIS JSON Schema" in result.output and "--schema" in result.output
    with pytest.raises(epcis_import.EpcisInputError):
        find_schema()


@pytest.mark.shared
def test_cli_imports_every_official_example_through_its_own_parser(cli, tmp_path):
    """`provenance import epcis` on each of the 52 official example files, as a user runs
    it: the CLI reads the bytes (not json.loads), validates, imports. All are accepted;
    AssociationEvent-h.jsonld repeats `eventID`: the last one is kept, and said."""
    stored = 0
    for path in example_files():
        result = cli("epcis", str(path), "--as", "Green Valley Farm", command=import_group)
        stored += sum(line.startswith("stored\t") for line in result.stdout.splitlines())
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        if path.name == "AssociationEvent-h.jsonld":
            assert warnings == [
                f'warning: {path}: event 0 (epcisBody.eventList[0]): member "eventID" appears'
                ' 2 times; the last is used: "urn:uuid:fd338495-0e6d-41dd-afee-a862ecd32518"'
            ]
            (line,) = result.stdout.splitlines()
            assert line.split("\t")[:2] == [
                "stored", "urn:uuid:fd338495-0e6d-41dd-afee-a862ecd32518"
            ]  # fmt: skip
        else:
            assert warnings == [], path.name
    assert stored > 50


# --- the schema ships with the package


SCHEMA_SHA256 = "ed3228d7867198b4a5be9748fe77f473457c6ed98224fab28a950b4ce634a041"


def test_the_shipped_schema_is_the_official_one():
    """provenance/schemas/epcis holds GS1's schema unmodified, with its notice (origin,
    copyright, the repository's licence terms), and the import finds it by default."""
    shipped = epcis_import.PACKAGED_SCHEMA
    assert find_schema() == shipped
    assert shipped.is_relative_to(Path(epcis_import.__file__).parent)
    data = shipped.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256
    notice = (shipped.parent / "NOTICE.md").read_text(encoding="utf-8")
    assert SCHEMA_SHA256 in notice and "GS1 AISBL" in notice
    assert "https://github.com/gs1/EPCIS" in notice and "not** covered" in notice
    from support.paths import SHARED

    if SHARED.exists():
        assert (SHARED / SCHEMA).read_bytes() == data


@pytest.mark.external
def test_import_works_from_a_checkout_without_shared(tmp_path):
    """A fresh clone has no ../shared beside it: `provenance import epcis` run from a copy of
    the package in an empty folder, without --schema or $PROVENANCE_EPCIS_SCHEMA, validates
    with the shipped schema and imports."""
    checkout = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    package = Path(epcis_import.__file__).parents[1]  # provenance/, from provenance/exchange/
    shutil.copytree(package, checkout / "provenance", ignore=ignore)
    assert not (tmp_path / "shared").exists() and not (checkout.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != epcis_import.SCHEMA_ENV}
    env["PYTHONPATH"] = str(checkout)
    db, keys = str(tmp_path / "p.db"), str(tmp_path / "keys")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "provenance", "--db", db, "--keys", keys, *args],
            capture_output=True, text=True, timeout=120, check=False, env=env, cwd=checkout,
        )  # fmt: skip

    assert run("init").returncode == 0
    assert run("party", "add", "Farm", "--role", "producer").returncode == 0
    source = tmp_path / "doc.jsonld"
    source.write_text(json.dumps(document(shipping(ELSEWHERE))), encoding="utf-8")
    done = run("import", "epcis", str(source), "--as", "Farm")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stored\tni:///sha-256;")
    probe = subprocess.run(
        [sys.executable, "-c", f"import {epcis_import.__name__} as m; print(m.find_schema())"],
        capture_output=True, text=True, timeout=60, check=True, env=env, cwd=checkout,
    )  # fmt: skip
    assert probe.stdout.strip() == str(
        checkout / "provenance" / "exchange" / "schemas" / "epcis" / "EPCIS-JSON-Schema.json"
    )
