"""Cases and pallets in the EPCIS export (docs/epcis.md, "Pallets and cases"):
pack and unpack as AggregationEvents with the SSCC's EPC URI as parentID, a
shipment of pallets lists them in epcList; the documents validate against the
official schema and every eventID is what GS1's reference hasher computes."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from support.pallets import (
    CASE,
    LOT2,
    LOT3,
    PALLET,
    commission,
    contents,
    pallet_world,
    ship_pallet,
)
from support.reference_event_hash import check_against_reference, reference_hashes
from support.world import LOT, World, at

from provenance.exchange.epcis import lot_document, write_ledger_document
from provenance.exchange.epcis_import import find_schema
from provenance.exchange.epcis_vocabulary import ns
from provenance.exchange.event_hash import Prehasher, hash_prehash

CREATED = "2026-10-21T00:00:00Z"


@pytest.fixture(scope="module")
def world() -> World:
    w = pallet_world(World.create())
    shipment = ship_pallet(w)
    w.ok("dc", "receive", [LOT, LOT2, LOT3], {"shipment": shipment}, time=at(4))
    w.ok("dc", "unpack", [LOT3], {"sscc": CASE}, time=at(5))
    w.ok("dc", "unpack", [LOT, LOT2], {"sscc": PALLET}, time=at(6))
    # A unit packed by a party with no enrolled prefix: its Digital Link URI.
    commission(w, f"{LOT}D", "LOT42D")
    w.ship_and_receive("farm", "dc", [f"{LOT}D"], hours=7)
    w.ok(
        "dc",
        "pack",
        [f"{LOT}D"],
        {"sscc": "376104250021234569", "contents": contents(f"{LOT}D")},
        time=at(9),
    )
    return w


def _events(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["epcisBody"]["eventList"]


def _whole(world: World) -> dict[str, Any]:
    buffer = io.StringIO()
    write_ledger_document(world.store, buffer, created=CREATED)
    return json.loads(buffer.getvalue())


def _epc(sscc: str) -> str:
    return f"urn:epc:id:sscc:0614141.{sscc[0]}{sscc[8:17]}"


def test_pack_and_unpack_are_aggregation_events(world):
    document = lot_document(world.store, LOT3, created=CREATED)
    packs = [e for e in _events(document) if e.get(ns("kind")) in ("pack", "unpack")]
    assert [(e["type"], e["action"], e["bizStep"]) for e in packs] == [
        ("AggregationEvent", "ADD", "packing"),
        ("AggregationEvent", "DELETE", "unpacking"),
    ]
    pack, unpack = packs
    assert pack["parentID"] == _epc(CASE) == "urn:epc:id:sscc:0614141.1000000002"
    assert pack[ns("onPallet")] == _epc(PALLET)
    assert pack["childQuantityList"] == [{"epcClass": LOT3, "quantity": 20, "uom": "KGM"}]
    assert unpack["parentID"] == _epc(CASE)
    assert unpack["childQuantityList"] == [{"epcClass": LOT3}]


def test_shipping_and_receiving_a_pallet_lists_its_sscc(world):
    document = lot_document(world.store, LOT, created=CREATED)
    by_kind = {e.get(ns("kind")): e for e in _events(document)}
    assert by_kind["ship"]["epcList"] == [_epc(PALLET)]
    assert by_kind["receive"]["epcList"] == [_epc(PALLET)]  # from its shipment
    assert {q["epcClass"] for q in by_kind["ship"]["quantityList"]} == {LOT, LOT2, LOT3}


def test_a_unit_whose_company_prefix_is_unknown_is_named_by_its_digital_link(world):
    document = lot_document(world.store, f"{LOT}D", created=CREATED)
    (pack,) = [e for e in _events(document) if e.get(ns("kind")) == "pack"]
    assert pack["parentID"] == "https://id.gs1.org/00/376104250021234569"


def test_pallet_documents_validate_and_hash_as_the_reference_does(world):
    from jsonschema import Draft7Validator

    validator = Draft7Validator(
        json.loads(find_schema().read_text(encoding="utf-8")),
        format_checker=Draft7Validator.FORMAT_CHECKER,
    )
    documents = {uri: lot_document(world.store, uri, created=CREATED) for uri in (LOT, LOT3)}
    documents["whole"] = _whole(world)
    kinds = set()
    for name, document in documents.items():
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, (name, errors[:5])
        prehasher = Prehasher(document["@context"])

        def ours(item: dict[str, Any], prehasher: Prehasher = prehasher) -> list[str]:
            return [prehasher.prehash(event) for event in _events(item)]

        assert check_against_reference(name, document, ours, {}) == []
        theirs = reference_hashes(document)
        for index, event in enumerate(_events(document)):
            assert event["eventID"] == hash_prehash(ours(document)[index]) == theirs[index]
            kinds.add(event.get(ns("kind")))
    assert {"pack", "unpack", "ship", "receive"} <= kinds
