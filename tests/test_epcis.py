"""Tests for provenance.exchange.epcis: the GS1 EPCIS 2.0 JSON-LD export of ledger events.

A real ledger (tests/support/world.py) goes through commission, attach, readings, inspection,
shipping and receiving, a transformation, a retail sale, a recall and its lift, and a
detach; its lots are exported and the documents are checked against the official EPCIS 2.0
JSON Schema with format checking on (the copy shipped in provenance/schemas/epcis) and the
CBV vocabulary list (../shared/conformance/gs1-epcis/cbv/cbv-vocabulary.json; that check
skips when ../shared is absent), and every eventID against GS1's reference implementation of
the event hash (tests/support/reference_event_hash.py).
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.export_ledgers import build_reading_ledger, time_epcis_export
from support.paths import conformance
from support.reference_event_hash import check_against_reference, reference_hashes
from support.world import GTIN, HOUR, LOT, T0, World, at

from provenance.cli.exchange import export_epcis, time_range
from provenance.core import gs1
from provenance.core.errors import NotFound
from provenance.core.timefmt import format_time
from provenance.exchange.epcis import (
    epcis_document,
    epcis_events,
    ledger_events,
    lot_document,
    store_identities,
    store_lots,
    store_shipments,
    write_document,
    write_ledger_document,
)
from provenance.exchange.epcis_import import find_schema, import_events, prepare
from provenance.exchange.epcis_vocabulary import (
    EPCIS_CONTEXT,
    NAMESPACE,
    LedgerEvent,
    PartyInfo,
    ns,
)
from provenance.exchange.event_hash import Prehasher, document_hashes, event_hash, hash_prehash

LOT2 = gs1.lot_uri(GTIN, "B7")
MIX = gs1.lot_uri(GTIN, "MIX-1")
CREATED = "2026-10-21T00:00:00.000Z"
VOCABULARY = "gs1-epcis/cbv/cbv-vocabulary.json"
DOCK = {"name": "Farm dock 3", "gln": "4012345000115", "country": "KE"}
PLANT = {"name": "Packing plant", "lat": -1.2921, "lon": 36.8219, "country": "KE"}


@pytest.fixture(scope="module")
def chain() -> World:
    """One ledger with every lot event kind (module scope: built once, only read)."""
    w = World.create()  # LOT commissioned by farm at 0 h, probe attached at 0.5 h
    w.ok(
        "farm",
        "commission",
        [LOT2],
        {
            "gtin": GTIN,
            "lot": "B7",
            "product": "Spinach",
            "category": "food",
            "origin": {"name": "Green Valley", "lat": -0.42, "lon": 36.95, "country": "KE"},
            "produced": "2026-09-20",
            "expiry": "2026-10-05",
            "quantity": {"value": 120.5, "unit": "KGM"},
            "profile": "chilled",
            "ext": {"plot": "A3"},
        },
        time=at(0.2),
    )
    readings = [w.reading(1 + i * 0.25, 3.5 + i / 10) for i in range(10)]  # 1 h … 3.25 h
    readings.append(
        w.sign(
            "probe",
            "reading",
            [LOT],
            {
                "temperature_c": 4.25,
                "humidity_pct": 91,
                "lat": -1.05,
                "lon": 37.1,
                "shock_g": 2.5,
                "door_open": False,
                "battery_pct": 80,
                "sensor": "probe-A",
            },
            time=at(2.1),
        )
    )
    assert {r.status for r in w.ledger.append(readings)} == {"accepted"}
    w.ok(
        "farm",
        "inspect",
        [LOT],
        {
            "result": "pass",
            "document": {"sha256": "ab" * 32, "name": "lab.pdf", "media_type": "application/pdf"},
            "notes": "Listeria negative",
        },
        time=at(3.5),
    )
    shipped = w.ok("farm", "ship", [LOT], {"to": w.did("packer"), "location": DOCK}, time=at(4))
    w.ok(
        "packer",
        "receive",
        [LOT],
        {"shipment": shipped.event_id, "location": PLANT, "condition": "cold, intact"},
        time=at(6),
    )
    w.ok("packer", "detach", [LOT], {"device": w.did("probe")}, time=at(6.5))
    w.ok(
        "packer",
        "transform",
        [LOT, MIX],
        {
            "inputs": [{"batch": LOT, "quantity": {"value": 10, "unit": "KGM"}}],
            "outputs": [
                {
                    "batch": MIX,
                    "quantity": {"value": 40, "unit": "EA"},
                    "product": "Salad mix",
                    "expiry": "2026-10-01",
                }
            ],
            "location": PLANT,
        },
        time=at(7),
    )
    w.ship_and_receive("packer", "store", [MIX], hours=8)
    w.ok("store", "dispense", [MIX], {"quantity": {"value": 2, "unit": "EA"}}, time=at(10))
    w.ok("regulator", "recall", [MIX], {"reason": "Listeria", "class": "I"}, time=at(11))
    w.ok("regulator", "recall-lift", [MIX], {"reason": "Retested clean"}, time=at(12))
    # part of LOT2 (120.5 KGM) to dc, received short and partly damaged
    part = {"batch": LOT2, "quantity": {"value": 50.5, "unit": "KGM"}}
    papers = [{"type": "bol", "number": "BOL 77/1"}, {"type": "other", "number": "seal 9"}]
    shipped = {"to": w.did("dc"), "quantities": [part], "documents": papers}
    split = w.ok("farm", "ship", [LOT2], shipped, time=at(13))
    w.ok(
        "dc",
        "receive",
        [LOT2],
        {
            "shipment": split.event_id,
            "quantities": [{"batch": LOT2, "quantity": {"value": 48, "unit": "KGM"}}],
            "damaged": [{"batch": LOT2, "quantity": {"value": 1.5, "unit": "KGM"}}],
        },
        time=at(14),
    )
    return w


@pytest.fixture(scope="module")
def documents(chain) -> dict[str, dict[str, Any]]:
    return {uri: lot_document(chain.store, uri, created=CREATED) for uri in (LOT, LOT2, MIX)}


def _events(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["epcisBody"]["eventList"]


def _by_kind(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in _events(document) if e.get(ns("kind")) == kind]


def _ledger_ids(world: World, uri: str) -> Counter[str]:
    lot_id = world.store.chain_by_subject(uri)[0]
    return Counter(stored.envelope.event_id for stored in world.store.chain_events(lot_id))


def _exported_ids(document: dict[str, Any]) -> Counter[str]:
    ids: Counter[str] = Counter()
    for event in _events(document):
        if ns("eventId") in event:
            ids[event[ns("eventId")]] += 1
        for element in event.get("sensorElementList", ()):
            ids[element[ns("eventId")]] += 1
    return ids


# --- the document


def test_document_shell(documents):
    document = documents[LOT]
    assert document["@context"][0] == EPCIS_CONTEXT
    assert (
        document["@context"][1]["provenance"]
        == NAMESPACE
        == "https://w3id.org/provenance-ledger/epcis/"
    )
    assert (document["type"], document["schemaVersion"]) == ("EPCISDocument", "2.0")
    assert document["creationDate"] == CREATED
    json.dumps(document, allow_nan=False)  # plain JSON


def test_every_ledger_event_of_the_lot_appears_once_with_its_id(chain, documents):
    for uri, document in documents.items():
        assert _exported_ids(document) == _ledger_ids(chain, uri), uri


def test_event_ids_are_the_cbv_event_hash(documents):
    for document in documents.values():
        events = _events(document)
        assert [e["eventID"] for e in events] == document_hashes(document)
        for event in events:
            assert event["eventID"] == event_hash(event, context=document["@context"])
            assert event["eventID"].startswith("ni:///sha-256;")
        assert len({e["eventID"] for e in events}) == len(events)


def test_events_are_in_time_order_and_utc(documents):
    for document in documents.values():
        times = [e["eventTime"] for e in _events(document)]
        assert times == sorted(times)
        assert {e["eventTimeZoneOffset"] for e in _events(document)} == {"+00:00"}


def test_export_is_deterministic(chain, documents):
    again = lot_document(chain.store, LOT, created=CREATED)
    assert json.dumps(again) == json.dumps(documents[LOT])


def test_unknown_lot_is_not_found(chain):
    with pytest.raises(NotFound, match="no lot"):
        lot_document(chain.store, gs1.lot_uri(GTIN, "NOPE"), created=CREATED)


# --- each kind


def test_commission(chain, documents):
    (event,) = _by_kind(documents[LOT2], "commission")
    assert event["type"] == "ObjectEvent"
    assert (event["action"], event["bizStep"], event["disposition"]) == (
        "ADD",
        "commissioning",
        "active",
    )
    assert event["quantityList"] == [{"epcClass": LOT2, "quantity": 120.5, "uom": "KGM"}]
    assert event["readPoint"] == {"id": "geo:-0.42,36.95"}
    assert event["ilmd"]["cbvmda:itemExpirationDate"] == "2026-10-05"
    assert event["ilmd"]["cbvmda:countryOfOrigin"] == "KE"
    assert event["ilmd"][ns("product")] == "Spinach"
    assert event[ns("ext")] == {"plot": "A3"}
    assert event[ns("signer")] == chain.did("farm")
    # without a quantity the element names the class only (quantity is optional in EPCIS)
    (plain,) = _by_kind(documents[LOT], "commission")
    assert plain["quantityList"] == [{"epcClass": LOT}]


def test_readings_are_grouped_into_sensor_events(chain, documents):
    events = _by_kind(documents[LOT], "reading")
    assert len(events) == 3  # hours 1, 2 and 3 of T0
    assert sum(len(e["sensorElementList"]) for e in events) == 11
    for event in events:
        assert (event["type"], event["action"], event["bizStep"]) == (
            "ObjectEvent",
            "OBSERVE",
            "sensor_reporting",
        )
        assert event["quantityList"] == [{"epcClass": LOT}]
        assert event[ns("signer")] == chain.did("probe")
        times = [el["sensorMetadata"]["time"] for el in event["sensorElementList"]]
        assert times == sorted(times) and event["eventTime"] == times[-1]
        for element in event["sensorElementList"]:
            assert element["sensorMetadata"]["deviceID"] == chain.did("probe")
    first = events[0]["sensorElementList"][0]
    assert first["sensorReport"] == [{"type": "Temperature", "value": 3.5, "uom": "CEL"}]
    (rich,) = [el for e in events for el in e["sensorElementList"] if len(el["sensorReport"]) > 1]
    reports = {(r["type"], r.get("component")): r for r in rich["sensorReport"]}
    assert reports[("Temperature", None)]["value"] == 4.25
    assert reports[("RelativeHumidity", None)] == {
        "type": "RelativeHumidity",
        "value": 91,
        "uom": "P1",
    }
    assert reports[("Angle", "latitude")]["value"] == -1.05
    assert reports[("Angle", "longitude")]["uom"] == "DD"
    assert reports[("Acceleration", None)] == {
        "type": "Acceleration",
        "value": 24.516625,
        "uom": "MSK",
    }
    assert reports[(ns("DoorOpen"), None)]["booleanValue"] is False
    assert reports[(ns("BatteryLevel"), None)]["value"] == 80
    assert rich[ns("sensor")] == "probe-A"


def test_reading_window_is_a_parameter(chain):
    lot_id = chain.store.chain_by_subject(LOT)[0]
    readings = [
        LedgerEvent(s.envelope, (LOT,))
        for s in chain.store.chain_events(lot_id)
        if s.envelope.kind == "reading"
    ]
    assert len(epcis_events(readings, reading_window_s=24 * 3600)) == 1
    assert len(epcis_events(readings, reading_window_s=60)) == 11
    with pytest.raises(ValueError):
        epcis_events(readings, reading_window_s=0)


def test_inspect(documents):
    (event,) = _by_kind(documents[LOT], "inspect")
    assert (event["bizStep"], event["disposition"]) == ("inspecting", "conformant")
    # RFC 6920 name of the certificate's SHA-256 (base64url, no padding)
    digest = base64.urlsafe_b64encode(bytes.fromhex("ab" * 32)).rstrip(b"=").decode()
    assert event["certificationInfo"] == f"ni:///sha-256;{digest}"
    assert event[ns("document")][ns("name")] == "lab.pdf"
    assert event[ns("notes")] == "Listeria negative"


def test_ship_and_receive(chain, documents):
    (ship,) = _by_kind(documents[LOT], "ship")
    assert (ship["action"], ship["bizStep"], ship["disposition"]) == (
        "OBSERVE",
        "shipping",
        "in_transit",
    )
    assert ship["readPoint"] == {"id": "https://id.gs1.org/414/4012345000115"}
    farm, packer = chain.did("farm"), chain.did("packer")
    assert ship["sourceList"] == [
        {"type": "owning_party", "source": farm},
        {"type": "possessing_party", "source": farm},
        {"type": "location", "source": "https://id.gs1.org/414/4012345000115"},
    ]
    assert ship["destinationList"] == [
        {"type": "owning_party", "destination": packer},
        {"type": "possessing_party", "destination": packer},
    ]
    (receive,) = _by_kind(documents[LOT], "receive")
    assert (receive["bizStep"], receive["disposition"]) == ("receiving", "in_progress")
    assert receive["readPoint"] == receive["bizLocation"] == {"id": "geo:-1.2921,36.8219"}
    assert receive[ns("shipment")] == ship[ns("eventId")]
    assert receive["sourceList"][0] == {"type": "owning_party", "source": farm}
    assert receive["destinationList"][1] == {"type": "possessing_party", "destination": packer}
    assert receive[ns("condition")] == "cold, intact"
    assert receive[ns("location")][ns("name")] == "Packing plant"


def test_split_ship_and_receive_carry_quantities(documents):
    """docs/protocol.md, "Quantities": quantityList says how much moved."""
    (ship,) = _by_kind(documents[LOT2], "ship")
    assert ship["quantityList"] == [{"epcClass": LOT2, "quantity": 50.5, "uom": "KGM"}]
    (receive,) = _by_kind(documents[LOT2], "receive")
    assert receive["quantityList"] == [{"epcClass": LOT2, "quantity": 48, "uom": "KGM"}]
    assert receive[ns("damaged")] == [{"epcClass": LOT2, "quantity": 1.5, "uom": "KGM"}]
    (whole,) = _by_kind(documents[LOT], "ship")  # no quantities: the lot moved whole
    assert whole["quantityList"] == [{"epcClass": LOT}]


def test_reference_documents_are_business_transactions(chain, documents):
    """FSMA 204's reference documents (docs/protocol.md §17) as the CBV's business
    transactions: a typed id per document, the number percent-encoded into a URI."""
    (ship,) = _by_kind(documents[LOT2], "ship")
    farm = chain.did("farm")
    assert ship["bizTransactionList"] == [
        {"type": "bol", "bizTransaction": f"{farm}#bol:BOL%2077%2F1"},
        {"type": NAMESPACE + "btt-other", "bizTransaction": f"{farm}#other:seal%209"},
    ]


def test_transform(documents):
    (event,) = _by_kind(documents[MIX], "transform")
    assert event["type"] == "TransformationEvent"
    assert "action" not in event
    assert event["inputQuantityList"] == [{"epcClass": LOT, "quantity": 10, "uom": "KGM"}]
    assert event["outputQuantityList"] == [{"epcClass": MIX, "quantity": 40, "uom": "EA"}]
    assert event[ns("outputs")] == [
        {ns("batch"): MIX, ns("product"): "Salad mix", ns("expiry"): "2026-10-01"}
    ]
    assert _by_kind(documents[LOT], "transform")[0]["eventID"] == event["eventID"]


def test_dispense_recall_and_lift(documents):
    (sale,) = _by_kind(documents[MIX], "dispense")
    assert (sale["bizStep"], sale["disposition"]) == ("retail_selling", "retail_sold")
    assert sale["quantityList"] == [{"epcClass": MIX, "quantity": 2, "uom": "EA"}]
    (recall,) = _by_kind(documents[MIX], "recall")
    assert recall["disposition"] == "recalled"
    assert recall["persistentDisposition"] == {"set": ["recalled"]}
    assert (recall[ns("reason")], recall[ns("recallClass")]) == ("Listeria", "I")
    (lift,) = _by_kind(documents[MIX], "recall-lift")
    assert lift["persistentDisposition"] == {"unset": ["recalled"]}
    assert "disposition" not in lift


def test_attach_and_detach_are_association_events(chain, documents):
    attach, detach = _by_kind(documents[LOT], "attach"), _by_kind(documents[LOT], "detach")
    for (event,), action, step in ((attach, "ADD", "installing"), (detach, "DELETE", "removing")):
        assert event["type"] == "AssociationEvent"
        assert event["parentID"] == chain.did("probe")
        assert event["childQuantityList"] == [{"epcClass": LOT}]
        assert (event["action"], event["bizStep"]) == (action, step)


def test_master_data_names_lots_and_identities(chain, documents):
    vocabularies = {
        v["type"]: {e["id"]: e["attributes"] for e in v["vocabularyElementList"]}
        for v in documents[MIX]["epcisHeader"]["epcisMasterData"]["vocabularyList"]
    }
    classes = vocabularies["urn:epcglobal:epcis:vtype:EPCClass"]
    assert classes[MIX] == [
        {"id": "urn:epcglobal:cbv:mda#descriptionShort", "attribute": "Salad mix"}
    ]
    parties = vocabularies["urn:epcglobal:epcis:vtype:SourceDest"]
    assert parties[chain.did("store")][0]["attribute"] == "store"
    signers = vocabularies[NAMESPACE + "Identity"]
    assert {"id": NAMESPACE + "role", "attribute": "regulator"} in signers[chain.did("regulator")]


# --- pure mapping, no store


def test_mapping_without_a_store_uses_the_lookups(chain):
    ship = chain.sign("farm", "ship", [LOT], {"to": chain.did("dc")}, time=at(20))
    sale = chain.sign("dc", "dispense", [LOT], {"quantity": {"value": 1, "unit": "EA"}})
    enrol = chain.sign(
        "registrar",
        "enrol",
        None,
        {"subject": chain.did("farm"), "type": "party", "name": "x", "role": "producer"},
    )
    glns = {chain.did("farm"): PartyInfo("Farm", "producer", gln="4012345000009")}
    document = epcis_document([ship, sale, enrol], created=CREATED, identities=glns.get)
    events = _events(document)
    assert [e[ns("kind")] for e in events] == ["dispense", "ship"]  # by time; enrol left out
    assert events[0]["bizStep"] == "dispensing"  # not known as a retailer
    assert events[1]["sourceList"][0] == {
        "type": "owning_party",
        "source": "https://id.gs1.org/417/4012345000009",
    }
    assert events[1]["destinationList"][0]["destination"] == chain.did("dc")
    assert events[1][ns("eventId")] == ship.event_id
    assert "epcisHeader" in document  # the farm's name from the lookup
    bare = epcis_document([ship], created=CREATED)
    assert "epcisHeader" not in bare


def test_events_given_twice_appear_once(chain):
    def chain_of(uri: str) -> list[LedgerEvent]:
        lot_id = chain.store.chain_by_subject(uri)[0]
        return [LedgerEvent(s.envelope, (uri,)) for s in chain.store.chain_events(lot_id)]

    both = epcis_events(chain_of(LOT) + chain_of(MIX))
    kinds = Counter(event[ns("kind")] for event in both)
    assert kinds["transform"] == 1
    assert len(both) == len(epcis_events(chain_of(LOT))) + len(epcis_events(chain_of(MIX))) - 1


def test_store_identity_lookup(chain):
    lookup = store_identities(chain.store)
    assert lookup(chain.did("probe")) == PartyInfo("probe", "device")
    assert lookup(chain.did("clinic")) == PartyInfo("clinic", "clinic")
    assert lookup("did:key:z6MkUnknown") is None


# --- conformance: the official schema and vocabulary


def _validator(format_checking: bool = True):
    from jsonschema import Draft7Validator

    schema = json.loads(find_schema().read_text(encoding="utf-8"))  # the shipped one
    checker = Draft7Validator.FORMAT_CHECKER if format_checking else None
    return Draft7Validator(schema, format_checker=checker)


def test_documents_validate_against_the_epcis_schema(documents):
    validator = _validator()
    for uri, document in documents.items():
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, (uri, errors[:5])


def test_format_checking_is_really_on(documents):
    bad = json.loads(json.dumps(documents[LOT]))
    bad["epcisBody"]["eventList"][0]["bizStep"] = "not a uri"
    assert _validator(format_checking=False).is_valid(bad)  # only the uri format catches it
    assert not _validator().is_valid(bad)
    bad = json.loads(json.dumps(documents[LOT]))
    bad["creationDate"] = "yesterday"
    assert not _validator().is_valid(bad)


@pytest.mark.shared
def test_every_cbv_short_name_is_in_the_vocabulary(documents):
    vocabularies = json.loads(conformance(VOCABULARY).read_text(encoding="utf-8"))["vocabularies"]
    terms = {name: {t["term"] for t in v["terms"]} for name, v in vocabularies.items()}
    used: dict[str, set[str]] = {name: set() for name in terms}
    for document in documents.values():
        for event in _events(document):
            used["bizStep"].add(event.get("bizStep"))
            used["disposition"].add(event.get("disposition"))
            for values in event.get("persistentDisposition", {}).values():
                used["disposition"].update(values)
            for field in ("sourceList", "destinationList"):
                used["sourceDestType"].update(end["type"] for end in event.get(field, ()))
            for element in event.get("sensorElementList", ()):
                for report in element["sensorReport"]:
                    used["measurementType"].add(report["type"])
                    used["component"].add(report.get("component"))
    for name, values in used.items():
        short = {v for v in values if v and ":" not in v}  # CURIEs and URIs are not CBV names
        assert short <= terms[name], (name, short - terms[name])
    assert used["bizStep"] >= {"commissioning", "shipping", "receiving", "sensor_reporting"}
    assert used["disposition"] >= {"active", "in_transit", "recalled", "retail_sold"}


# --- whole-ledger exports: streaming, filters, imported events


def _written(world: World, **filters: Any) -> dict[str, Any]:
    buffer = io.StringIO()
    count = write_ledger_document(world.store, buffer, created=CREATED, **filters)
    document = json.loads(buffer.getvalue())
    assert count == len(_events(document))
    return document


def test_streamed_document_is_the_in_memory_document(chain):
    whole = _written(chain)
    expected = epcis_document(
        ledger_events(chain.store),
        created=CREATED,
        identities=store_identities(chain.store),
        lots=store_lots(chain.store),
        shipments=store_shipments(chain.store),
    )
    assert whole == expected
    assert _written(chain, lot=MIX) == lot_document(chain.store, MIX, created=CREATED)
    # the lot documents are parts of the whole: every event of every lot is in it
    ids = {e["eventID"] for e in _events(whole)}
    for uri in (LOT, LOT2, MIX):
        assert {e["eventID"] for e in _events(lot_document(chain.store, uri))} <= ids


def test_write_document_sorts_any_input_order(chain):
    """The writer gives the events of `epcis_events`, in time order whatever the input
    order (a receive finds its ship among the events before it, when they come in order)."""
    items = list(ledger_events(chain.store))
    forward, backward = io.StringIO(), io.StringIO()
    write_document(forward, items, created=CREATED, unique=True)
    write_document(backward, list(reversed(items)), created=CREATED)
    assert _events(json.loads(forward.getvalue())) == epcis_events(items)
    times = [e["eventTime"] for e in _events(json.loads(backward.getvalue()))]
    assert times == sorted(times)


def test_time_range_and_product_filters(chain):
    hours = [e[ns("kind")] for e in _events(_written(chain, since_us=T0 + 4 * HOUR))]
    assert hours[0] == "ship" and "commission" not in hours
    early = _events(_written(chain, until_us=T0 + HOUR))
    assert [e[ns("kind")] for e in early] == ["commission", "commission", "attach"]
    spinach = _written(chain, product="spinACH")
    assert {e[ns("kind")] for e in _events(spinach)} == {"commission", "ship", "receive"}
    salad = {e[ns("kind")] for e in _events(_written(chain, product="Salad"))}
    assert salad == {"transform", "ship", "receive", "dispense", "recall", "recall-lift"}
    assert _events(_written(chain, product="nothing like it")) == []
    with pytest.raises(NotFound):
        _written(chain, lot=gs1.lot_uri(GTIN, "NOPE"))


def test_a_receive_names_its_sender_even_when_the_ship_is_filtered_out(chain):
    window = _written(chain, since_us=T0 + 5 * HOUR, until_us=T0 + 6 * HOUR + 1)
    (receive,) = [e for e in _events(window) if e[ns("kind")] == "receive"]
    assert receive["sourceList"][0] == {"type": "owning_party", "source": chain.did("farm")}


def test_imported_events_pass_through_unchanged(chain):
    partner = {
        "type": "ObjectEvent",
        "eventID": "urn:uuid:6c0a4f3e-2b1d-4c5e-9f8a-7b6c5d4e3f2a",
        "eventTime": "2026-09-21T12:00:00.000-05:00",
        "eventTimeZoneOffset": "-05:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "OBSERVE",
        "bizStep": "urn:epcglobal:cbv:bizstep:receiving",
        "example:temperature": 4.0,
    }
    envelope = chain.sign("packer", "epcis", None, {"event": partner}, time="2026-09-21T17:00:00Z")
    events = epcis_events([LedgerEvent(envelope, ())])
    assert events == [partner]  # no eventID of ours, no provenance fields
    assert events[0]["eventID"] == partner["eventID"]


def test_whole_ledger_document_validates(chain):
    validator = _validator()
    document = _written(chain)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors[:5]


# --- the command line: provenance export epcis


def test_cli_export_epcis(two_lot_cli, tmp_path):
    whole = json.loads(two_lot_cli(command=export_epcis).stdout)
    assert [e[ns("kind")] for e in _events(whole)] == ["commission", "commission"]
    kale = json.loads(two_lot_cli("--product", "kale", command=export_epcis).stdout)
    assert [e["quantityList"][0]["epcClass"] for e in _events(kale)] == [LOT]
    out = tmp_path / "lot.jsonld"
    result = two_lot_cli("--batch", LOT2, "--out", str(out), command=export_epcis)
    assert "1 EPCIS events written to" in result.stderr
    assert _events(json.loads(out.read_text()))[0]["quantityList"][0]["epcClass"] == LOT2
    assert not list(tmp_path.glob("*.part"))
    today = datetime.now(UTC).date()
    yesterday = str(today - timedelta(days=1))
    none = json.loads(two_lot_cli("--to", yesterday, command=export_epcis).stdout)
    assert _events(none) == []
    both = two_lot_cli("--from", str(today), "--to", str(today), command=export_epcis)
    both = json.loads(both.stdout)
    assert len(_events(both)) == 2


def test_cli_export_epcis_refuses_bad_input(two_lot_cli):
    result = two_lot_cli("--from", "21/09/2026", code=2, command=export_epcis)
    assert "YYYY-MM-DD" in result.output
    result = two_lot_cli("--from", "2026-09-02", "--to", "2026-09-01", code=2, command=export_epcis)
    assert "--to is before --from" in result.output
    result = two_lot_cli("--batch", gs1.lot_uri(GTIN, "NOPE"), code=1, command=export_epcis)
    assert "no lot" in result.output


def test_time_range_bounds():
    assert time_range(None, None) == (None, None)
    since, until = time_range("2026-09-21", "2026-09-21")
    assert until - since == 24 * HOUR
    assert format_time(since) == "2026-09-21T00:00:00.000Z"
    since, until = time_range("2026-09-21T10:00:00Z", "2026-09-21T10:00:00Z")
    assert until == since + 1  # both ends included


# --- the large-ledger harness of bench/exports.py stays honest


def test_large_export_harness(tmp_path):
    world = build_reading_ledger(tmp_path, 1_200)  # 1,200 readings, 10 s apart: 4 hours
    figures = time_epcis_export(world, memory=True)
    assert figures["events"] == 2 + 4  # commission, attach, one sensor event per hour
    document = _written(world)
    elements = [el for e in _events(document) for el in e.get("sensorElementList", ())]
    assert len(elements) == 1_200
    assert figures["peak_mib"] < 20


# --- the reference implementation of the event hash agrees with every eventID we write


PARTNER = {
    "@context": [EPCIS_CONTEXT, {"example": "http://ns.example.com/epcis/"}],
    "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2026-09-21T00:00:00Z",
    "epcisBody": {"eventList": [{
        "type": "ObjectEvent", "eventTime": "2026-09-21T12:00:00.5-05:00",
        "eventTimeZoneOffset": "-05:00", "action": "OBSERVE", "bizStep": "receiving",
        "quantityList": [{"epcClass": LOT, "quantity": 1.50, "uom": "KGM"}],
        "example:probe": {"example:ok": "yes", "example:readings": ["2", "10"]},
    }]},
}  # fmt: skip


@pytest.fixture(scope="module")
def shapes() -> World:
    """A second ledger with the shapes the first lacks: a reading for two lots at once, a
    failed inspection, a recall return, a dispense by a clinic, a ship and a receive without
    locations, an output with everything, and an imported partner event without an id."""
    w = World.create()
    lot3 = gs1.lot_uri(GTIN, "C/3%")  # a lot code that needs escaping
    w.ok("farm", "commission", [lot3], {"gtin": GTIN, "lot": "C/3%", "product": "Kale 'n' co",
         "category": "food", "profile": "chilled", "quantity": {"value": 7, "unit": "EA"},
         "expiry": "2026-10-30", "produced": "2026-09-19",
         "origin": {"name": "Hill", "lat": 1.5, "lon": -0.25, "country": "UG"}},
         time=at(0.1))  # fmt: skip
    w.ok("farm", "attach", [lot3], {"device": w.did("probe")}, time=at(0.6))
    both = sorted([LOT, lot3])
    readings = [
        w.sign("probe", "reading", both, {"temperature_c": -18.5, "door_open": True}, time=at(1)),
        w.sign("probe", "reading", both, {"humidity_pct": 40.25, "battery_pct": 3}, time=at(1.2)),
        w.sign("probe", "reading", None, {"lat": 0, "lon": -179.999999}, time=at(1.4)),
    ]
    assert {r.status for r in w.ledger.append(readings)} == {"accepted"}
    w.ok("farm", "inspect", [lot3], {"result": "fail", "notes": "Bruised\nbatch"}, time=at(2))
    w.ok("regulator", "recall", [lot3], {"reason": "Bruising", "class": "II",
         "instructions": "Return to farm"}, time=at(3))  # fmt: skip
    w.ok("farm", "ship", [lot3], {"to": w.did("packer"), "purpose": "recall-return"},
         time=at(4))  # fmt: skip
    w.ship_and_receive("farm", "clinic", [LOT], hours=5)
    w.ok("clinic", "dispense", [LOT], {"quantity": {"value": 0.5, "unit": "KGM"}}, time=at(6.5))
    # The clinic received LOT, so it may sign partner events about it (docs/protocol.md §3).
    report = import_events(w.ledger, w.keys["clinic"], prepare(PARTNER))
    assert report.ok, report
    return w


def _documents_to_check(chain: World, shapes: World) -> dict[str, dict[str, Any]]:
    found = {f"chain lot {uri}": lot_document(chain.store, uri, created=CREATED)
             for uri in (LOT, LOT2, MIX)}  # fmt: skip
    found["chain whole ledger (streamed)"] = _written(chain)
    found["shapes whole ledger (streamed)"] = _written(shapes)
    found["shapes whole ledger (in memory)"] = epcis_document(
        ledger_events(shapes.store),
        created=CREATED,
        identities=lambda did: PartyInfo("Farm", "producer", gln="4012345000009"),
        lots=store_lots(shapes.store),
        shipments=store_shipments(shapes.store),
    )
    return found


def _our_prehashes(document: dict[str, Any]) -> list[str]:
    prehasher = Prehasher(document["@context"])
    return [prehasher.prehash(event) for event in _events(document)]


def test_every_exported_event_id_is_what_the_reference_implementation_computes(chain, shapes):
    """Every eventID the export writes is the reference's hash of that event (GS1's
    `epcis-event-hash-generator`), and so is our hash of an imported event passed through.
    One listed bug of the reference is allowed, and checked to be the only difference: it
    writes booleans as Python's True/False (tests/support/reference_event_hash.py)."""
    kinds: Counter[str] = Counter()
    for name, document in _documents_to_check(chain, shapes).items():
        events = _events(document)
        booleans = {
            (name, index): ("python-booleans",)
            for index, event in enumerate(events)
            if "booleanValue" in json.dumps(event)
        }
        own_context = {
            (name, index): ("event-context",)
            for index, event in enumerate(events)
            if "@context" in event
        }
        ours = _our_prehashes(document)
        known = booleans | own_context
        assert check_against_reference(name, document, _our_prehashes, known) == []
        theirs = reference_hashes(document)
        for index, event in enumerate(events):
            kind = event.get(ns("kind"), "imported")
            kinds[kind] += 1
            assert event["eventID"] == hash_prehash(ours[index]), (name, kind)
            if (name, index) not in known:
                assert event["eventID"] == theirs[index], (name, kind)
            if "@context" in event:  # the id the import gave it: the partner's document's hash
                assert event["eventID"] == reference_hashes(PARTNER)[0]
        kinds["boolean"] += len(booleans)
    exported = {"commission", "attach", "detach", "reading", "inspect", "ship", "receive",
                "transform", "dispense", "recall", "recall-lift", "imported",
                "boolean"}  # fmt: skip
    assert set(kinds) == exported, kinds
