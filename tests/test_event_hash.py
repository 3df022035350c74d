"""Tests for provenance.exchange.event_hash: the EPCIS Event Hash ID of CBV 2.0 §8.9.

Known answers come from the reference implementation's published examples
(epcis-event-hash-generator/examples, in ../shared/conformance or vendored in tests/vectors:
X.jsonld with the expected hash of each event in X.hashes and its pre-hash string in
X.prehashes). Three pre-hash lines are stale upstream (the conformance README names them);
they are skipped by name, and their hashes are still checked.

Beyond stored answers, the reference implementation itself (the `epcis-event-hash-generator`
package, tests/support/reference_event_hash.py) hashes every vector and every official EPCIS example
(../shared/conformance/gs1-epcis/examples), and we must agree with it event by event, except
where a listed bug of the reference makes it depart from CBV 2.0.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from support.paths import SHARED, VENDORED, conformance
from support.reference_event_hash import (
    KNOWN_DIFFERENCES,
    REFERENCE,
    REFERENCE_BUGS,
    REFUSED,
    RELEASE,
    ReferenceFailed,
    check_against_reference,
    reference_hashes,
)

from provenance.core.errors import ValidationError
from provenance.exchange.canonical_values import normalise_identifier, normalise_time
from provenance.exchange.event_hash import (
    document_events,
    document_hashes,
    document_prehashes,
    event_hash,
    hash_prehash,
    ignore_fields,
    prehash,
)

EXAMPLES = "epcis-event-hash-generator/examples"

# (document, 1-based line) of the .prehashes lines that are stale upstream
# (../shared/conformance/README.md); their .hashes lines are current.
STALE_PREHASHES = frozenset(
    {
        ("epcisDocWithAllGS1Keys", 1),
        ("epcisDocWithCustomSchemaInContext", 2),
        ("epcisDocWithDefaultSchemaInContext", 2),
    }
)


OFFICIAL = "gs1-epcis/examples"


def _example_names() -> list[str]:
    folder = conformance(EXAMPLES)
    return sorted(path.stem for path in folder.glob("*.jsonld"))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _example(name: str) -> tuple[dict[str, Any], list[str], list[str]]:
    folder = conformance(EXAMPLES)
    document = json.loads((folder / f"{name}.jsonld").read_text(encoding="utf-8"))
    return (
        document,
        _lines(folder / f"{name}.hashes"),
        _lines(folder / f"{name}.prehashes"),
    )


# --- reference vectors


@pytest.mark.parametrize("name", _example_names())
def test_hash_of_every_event_matches_the_reference(name):
    document, hashes, _ = _example(name)
    assert hashes, f"{name}.hashes is empty"
    assert document_hashes(document) == hashes


@pytest.mark.parametrize("name", _example_names())
def test_prehash_strings_match_except_the_stale_lines(name):
    document, hashes, expected = _example(name)
    ours = document_prehashes(document)
    for line, (mine, theirs) in enumerate(zip(ours, expected, strict=False), start=1):
        if (name, line) in STALE_PREHASHES:
            # Stale upstream: it no longer hashes to the published hash, ours does.
            assert hash_prehash(theirs) != hashes[line - 1]
            assert hash_prehash(mine) == hashes[line - 1]
            continue
        assert mine == theirs, f"{name} line {line}"
        assert hash_prehash(theirs) == hashes[line - 1]


def test_vector_totals_and_the_stale_lines_are_exactly_those_listed():
    folder = conformance(EXAMPLES)
    hashes_checked = prehashes_checked = 0
    mismatches = set()
    for name in _example_names():
        document, hashes, expected = _example(name)
        assert document_hashes(document) == hashes
        hashes_checked += len(hashes)
        for line, (mine, theirs) in enumerate(
            zip(document_prehashes(document), expected, strict=False), 1
        ):
            prehashes_checked += 1
            if mine != theirs:
                mismatches.add((name, line))
    assert mismatches == STALE_PREHASHES
    assert (hashes_checked, prehashes_checked) == (43, 42), folder


def test_vendored_vectors_are_unedited():
    folder = VENDORED / "epcis-event-hash-generator"
    text = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "https://github.com/RalphTro/epcis-event-hash-generator" in text and "MIT" in text
    listed = re.findall(r"^([0-9a-f]{64})  (\S+)$", text, re.M)
    files = {f"examples/{p.name}" for p in (folder / "examples").iterdir()}
    assert {name for _, name in listed} == files
    for digest, name in listed:
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        if SHARED.exists():
            assert (SHARED / "epcis-event-hash-generator" / name).read_bytes() == data, name


# --- the reference implementation itself, run on every vector and official example


def _our_prehashes(item: dict[str, Any]) -> list[str]:
    """Ours, for a document, a query document or a bare event (the schema's test files)."""
    if "epcisBody" in item:
        return document_prehashes(item)
    return [prehash(item, context=item.get("@context"))]


def _reference_inputs() -> list[str]:
    """Every vector, and every official example when ../shared is there."""
    names = [f"{EXAMPLES}/{name}.jsonld" for name in _example_names()]
    official = SHARED / OFFICIAL
    if official.exists():
        names += sorted(
            f"{OFFICIAL}/{path.relative_to(official).as_posix()}"
            for path in official.rglob("*")
            if path.suffix in (".json", ".jsonld")
        )
    return names


@pytest.mark.parametrize("source", _reference_inputs())
def test_the_reference_implementation_agrees_event_by_event(source):
    """Our pre-hash string of every event equals the reference's, except on the listed
    inputs, where the listed bug of the reference (and only it) makes the difference."""
    item = json.loads(conformance(source).read_text(encoding="utf-8"))
    assert check_against_reference(source, item, _our_prehashes) == []


def test_the_reference_is_the_release_its_bug_list_describes():
    """The dev dependency is pinned: another release may fix or add bugs, and then
    KNOWN_DIFFERENCES must be redone against it, not loosened."""
    assert importlib.metadata.version(REFERENCE) == RELEASE


def test_the_reference_gives_the_published_hashes():
    """The reference (a release older than the vectors) reproduces the published hashes,
    except on the documents listed as beyond it: the comparison above is with the real thing."""
    for name in _example_names():
        document, hashes, _ = _example(name)
        source = f"{EXAMPLES}/{name}.jsonld"
        listed = {index for (where, index) in KNOWN_DIFFERENCES if where == source}
        theirs = reference_hashes(document)
        for index, (mine, published) in enumerate(zip(theirs, hashes, strict=True)):
            assert (mine == published) is (index not in listed), (name, index)


@pytest.mark.shared
def test_every_listed_difference_names_an_input_and_a_known_bug():
    inputs = set(_reference_inputs())
    for (source, _index), bugs in KNOWN_DIFFERENCES.items():
        assert source in inputs, source
        assert bugs and set(bugs) <= set(REFERENCE_BUGS), bugs
    used = {bug for bugs in KNOWN_DIFFERENCES.values() for bug in bugs}
    # event-context shows on exported imported events (tests/test_epcis.py), not on inputs
    assert used | {"event-context"} == set(REFERENCE_BUGS)


def test_the_reference_runs_offline():
    """It would fetch an unknown @context from the internet; here it is refused instead."""
    document = {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                     "https://example.org/remote-context.jsonld"],
        "type": "EPCISDocument",
        "epcisBody": {"eventList": [{"type": "ObjectEvent", "action": "ADD"}]},
    }  # fmt: skip
    REFUSED.clear()
    with pytest.raises(ReferenceFailed, match="loading remote context failed"):
        reference_hashes(document)
    assert REFUSED == ["https://example.org/remote-context.jsonld"]


def test_the_comparison_can_fail():
    """The checker reports an unlisted difference, a listed one that has gone, and a listed
    bug that does not explain the whole difference."""
    source = f"{EXAMPLES}/epcisDocWithSensorDataObjectEvent.jsonld"
    item = json.loads(conformance(source).read_text(encoding="utf-8"))
    assert check_against_reference(source, item, _our_prehashes) == []
    off = check_against_reference(source, item, lambda d: [p + "x" for p in _our_prehashes(d)])
    assert off and "reference" in off[0]
    listed = {(source, 0): ("python-booleans",)}
    stale = check_against_reference(source, item, _our_prehashes, listed)
    assert stale and "now agrees" in stale[0]
    wrong = check_against_reference(
        source,
        item,
        lambda d: [p.replace("value=", "value=0") for p in _our_prehashes(d)],
        listed,
    )
    assert wrong and "do not explain" in wrong[0]


# --- the hash ID


EVENT = {
    "type": "ObjectEvent",
    "eventTime": "2020-03-04T11:00:30.000+01:00",
    "eventTimeZoneOffset": "+01:00",
    "epcList": ["urn:epc:id:sscc:4012345.0000000333", "urn:epc:id:sscc:4012345.0000000111"],
    "action": "OBSERVE",
    "bizStep": "departing",
    "disposition": "in_transit",
    "readPoint": {"id": "urn:epc:id:sgln:4012345.00011.987"},
    "bizTransactionList": [{"type": "po", "bizTransaction": "urn:epc:id:gdti:4012345.11111.123"}],
    "sourceList": [{"type": "owning_party", "source": "urn:epc:id:pgln:4012345.00000"}],
    "destinationList": [{"type": "owning_party", "destination": "urn:epc:id:pgln:0614141.00000"}],
    "example:note": "x",
}
CONTEXT = [
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    {"example": "https://ns.example.com/epcis/"},
]


def test_hash_is_sha256_of_the_prehash_in_an_ni_uri():
    text = prehash(EVENT, context=CONTEXT)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert event_hash(EVENT, context=CONTEXT) == f"ni:///sha-256;{digest}?ver=CBV2.0"


def test_prehash_of_a_known_event():
    assert prehash(EVENT, context=CONTEXT) == (
        "eventType=ObjectEvent"
        "eventTime=2020-03-04T10:00:30.000ZeventTimeZoneOffset=+01:00"
        "epcListepc=https://id.gs1.org/00/040123450000001112"
        "epc=https://id.gs1.org/00/040123450000003338"
        "action=OBSERVEbizStep=https://ref.gs1.org/cbv/BizStep-departing"
        "disposition=https://ref.gs1.org/cbv/Disp-in_transit"
        "readPointid=https://id.gs1.org/414/4012345000115/254/987"
        "bizTransactionListtype=https://ref.gs1.org/cbv/BTT-po"
        "bizTransaction=https://id.gs1.org/253/4012345111118123"
        "destinationListtype=https://ref.gs1.org/cbv/SDT-owning_party"
        "destination=https://id.gs1.org/417/0614141000005"
        "sourceListtype=https://ref.gs1.org/cbv/SDT-owning_party"
        "source=https://id.gs1.org/417/4012345000009"
        "{https://ns.example.com/epcis/}note=x"
    )


def test_key_order_list_order_and_whitespace_do_not_matter():
    reference = event_hash(EVENT, context=CONTEXT)
    rng = random.Random(7)
    for _ in range(20):
        items = list(copy.deepcopy(EVENT).items())
        rng.shuffle(items)
        shuffled = dict(items)
        shuffled["epcList"] = list(reversed(shuffled["epcList"]))
        shuffled["bizStep"] = "  departing "
        assert event_hash(shuffled, context=CONTEXT) == reference


def test_equivalent_spellings_hash_alike():
    spelled = copy.deepcopy(EVENT)
    spelled["eventTime"] = "2020-03-04T10:00:30Z"  # same instant in UTC, no fraction
    spelled["epcList"] = [
        "https://example.com/sscc/040123450000003338?x=1",  # custom domain, short name, query
        "https://id.gs1.org/00/040123450000001112",
    ]
    spelled["bizStep"] = "urn:epcglobal:cbv:bizstep:departing"
    spelled["disposition"] = "cbv:Disp-in_transit"
    spelled["readPoint"] = {"id": "https://id.gs1.org/414/4012345000115/254/987"}
    spelled["{https://ns.example.com/epcis/}note"] = spelled.pop("example:note")
    assert event_hash(spelled, context=CONTEXT) == event_hash(EVENT, context=CONTEXT)


def test_ignored_fields_and_comments_do_not_count():
    noisy = copy.deepcopy(EVENT) | {
        "eventID": "ni:///sha-256;00?ver=CBV2.0",
        "recordTime": "2024-01-01T00:00:00Z",
        "errorDeclaration": {"declarationTime": "2024-01-01T00:00:00Z"},
        "rdfs:comment": "hello",
        "@context": CONTEXT,
    }
    assert event_hash(noisy, context=CONTEXT) == event_hash(EVENT, context=CONTEXT)
    tagged = copy.deepcopy(EVENT) | {"example:captureID": "abc"}
    assert event_hash(tagged, context=CONTEXT) != event_hash(EVENT, context=CONTEXT)
    assert event_hash(tagged, context=CONTEXT, ignore=["example:captureID"]) == event_hash(
        EVENT, context=CONTEXT
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("eventTime",), "2020-03-04T11:00:30.001+01:00"),
        (("action",), "ADD"),
        (("bizStep",), "arriving"),
        (("readPoint", "id"), "urn:epc:id:sgln:4012345.00011.988"),
        (("sourceList", 0, "type"), "possessing_party"),
        (("example:note",), "y"),
    ],
)
def test_any_change_changes_the_hash(path, value):
    changed = copy.deepcopy(EVENT)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert event_hash(changed, context=CONTEXT) != event_hash(EVENT, context=CONTEXT)


def test_adding_or_removing_a_field_changes_the_hash():
    base = event_hash(EVENT, context=CONTEXT)
    assert event_hash({k: v for k, v in EVENT.items() if k != "disposition"}) != base
    assert event_hash(copy.deepcopy(EVENT) | {"bizLocation": {"id": "geo:1,2"}}) != base


def test_sensor_elements_are_ordered_and_numbers_canonical():
    def event(first: float, second: float) -> dict[str, Any]:
        return {
            "type": "ObjectEvent",
            "eventTime": "2026-01-01T00:00:00Z",
            "eventTimeZoneOffset": "+00:00",
            "epcList": [],
            "action": "OBSERVE",
            "sensorElementList": [
                {
                    "sensorMetadata": {"time": "2026-01-01T00:00:00Z", "deviceID": "did:key:z1"},
                    "sensorReport": [
                        {"type": "Temperature", "value": first, "uom": "CEL"},
                        {"type": "gs1:RelativeHumidity", "value": second, "uom": "P1"},
                    ],
                    "example:id": "abc",
                }
            ],
        }

    text = prehash(event(4.0, 55.50), context=CONTEXT)
    assert text.endswith(
        "action=OBSERVEsensorElementListsensorElement"
        "sensorMetadatatime=2026-01-01T00:00:00.000ZdeviceID=did:key:z1"
        "sensorReporttype=https://gs1.org/voc/RelativeHumidityvalue=55.5uom=P1"
        "sensorReporttype=https://gs1.org/voc/Temperaturevalue=4uom=CEL"
        "{https://ns.example.com/epcis/}id=abc"
    )
    assert "epcList" not in text  # an empty list adds nothing
    assert event_hash(event(4, 55.5), context=CONTEXT) == event_hash(
        event(4.0, 55.50), context=CONTEXT
    )


def test_booleans_are_written_as_xsd_booleans():
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-01-01T00:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "sensorElementList": [{"sensorReport": [{"type": "ex:Door", "booleanValue": True}]}],
    }
    assert "booleanValue=true" in prehash(event)


def test_document_helpers_read_query_documents_and_ignore_lists():
    query = {
        "@context": CONTEXT,
        "type": "EPCISQueryDocument",
        "epcisBody": {
            "queryResults": {
                "example:ignoreFields": ["example:note"],
                "resultsBody": {"eventList": [EVENT]},
            }
        },
    }
    assert document_events(query) == [EVENT]
    assert ignore_fields(query) == ["example:note"]
    without = {k: v for k, v in EVENT.items() if k != "example:note"}
    assert document_hashes(query) == [event_hash(without, context=CONTEXT)]
    with pytest.raises(ValidationError):
        document_events({"epcisBody": {}})


def test_an_event_needs_a_type():
    with pytest.raises(ValidationError, match="type"):
        prehash({"eventTime": "2026-01-01T00:00:00Z"})
    with pytest.raises(ValidationError):
        prehash(["not", "an", "event"])  # type: ignore[arg-type]


# --- normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-02-02T11:04:03.1415Z", "2023-02-02T11:04:03.142Z"),
        ("2023-02-02T11:04:03.1414Z", "2023-02-02T11:04:03.141Z"),
        ("2023-02-12T11:04:03.1007Z", "2023-02-12T11:04:03.101Z"),
        ("2023-12-31T23:59:59.9995Z", "2024-01-01T00:00:00.000Z"),  # rounding carries
        ("2005-04-03T20:33:31.116000-06:00", "2005-04-04T02:33:31.116Z"),
        ("2020-03-04T11:00:30+01:00", "2020-03-04T10:00:30.000Z"),
        ("2020-03-04T11:00+0130", "2020-03-04T09:30:00.000Z"),
        ("2026-09-21T14:13:20.123456789Z", "2026-09-21T14:13:20.123Z"),
        ("not a time", None),
        ("2023-02-30T00:00:00Z", None),
    ],
)
def test_timestamps(text, expected):
    assert normalise_time(text) == expected


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("urn:epc:id:sgtin:0614141.107346.2017", "https://id.gs1.org/01/10614141073464/21/2017"),
        (
            "urn:epc:id:sgtin:0614141.812345.6789%2F!",
            "https://id.gs1.org/01/80614141123458/21/6789%2F%21",
        ),
        ("urn:epc:id:sscc:4012345.0000000333", "https://id.gs1.org/00/040123450000003338"),
        ("urn:epc:id:sgln:4012345.00005.0", "https://id.gs1.org/414/4012345000054"),
        ("urn:epc:id:sgln:4012345.00005.122", "https://id.gs1.org/414/4012345000054/254/122"),
        ("urn:epc:id:pgln:999999999999.", "https://id.gs1.org/417/9999999999994"),
        ("urn:epc:id:gdti:987659999999..9", "https://id.gs1.org/253/98765999999929"),
        ("urn:epc:id:grai:4012345.00022.334455", "https://id.gs1.org/8003/04012345000221334455"),
        ("urn:epc:id:giai:4012345.ABC345", "https://id.gs1.org/8004/4012345ABC345"),
        (
            "urn:epc:id:itip:4012345.011111.01.02.987",
            "https://id.gs1.org/8006/040123451111180102/21/987",
        ),
        (
            "urn:epc:class:lgtin:4012345.012345.Lot987",
            "https://id.gs1.org/01/04012345123456/10/Lot987",
        ),
        ("urn:epc:idpat:sgtin:4054739.099914.*", "https://id.gs1.org/01/04054739999148"),
        ("https://id.gs1.org/gtin/9780345418913", "https://id.gs1.org/01/09780345418913"),
        (
            "https://example.com/shop/01/09506000134352/10/A1/21/7?s=1",
            "https://id.gs1.org/01/09506000134352/21/7",
        ),
        (
            "https://id.gs1.org/01/09506000134352/22/V2/10/LOT%2042",
            "https://id.gs1.org/01/09506000134352/10/LOT%2042",
        ),
        (
            "https://id.gs1.org/01/09506000134352/10/LOT42",
            "https://id.gs1.org/01/09506000134352/10/LOT42",
        ),
        ("urn:epc:id:sgtin:0614141.107346", None),  # no serial
        ("urn:epc:id:usdod:2S194.12345678901", None),  # not a GS1 key
        ("https://example.com/2023/01/report", None),
        ("https://ns.example.com/epcis/x", None),
        ("did:key:z6Mk", None),
        ("geo:47.5,11.1", None),
    ],
)
def test_identifiers(uri, expected):
    assert normalise_identifier(uri) == expected
