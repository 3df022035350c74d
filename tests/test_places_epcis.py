"""Places and parties by GS1 key in the EPCIS export (docs/epcis.md, "Places and
parties"): readPoint/bizLocation as 414 Digital Link URIs (a location cited by GLN
alone too), source/destination lists with the parties' PGLNs (417) and the
locations, master data with names and addresses; the documents validate against
the official schema and their eventIDs are GS1's reference hashes."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.reference_event_hash import check_against_reference
from support.world import GTIN, World, at

from provenance.core import gs1
from provenance.core.signing import did_of
from provenance.exchange.epcis import lot_document, write_ledger_document
from provenance.exchange.epcis_import import find_schema
from provenance.exchange.epcis_places import VTYPE_LOCATION
from provenance.exchange.epcis_vocabulary import ns
from provenance.exchange.event_hash import Prehasher

FARM_GLN = "9506000000008"
PACKHOUSE_GLN = "9506000000022"
PACKER_PGLN = "9506000000015"
LOT2 = gs1.lot_uri(GTIN, "B9")
ADDRESS = {"street": "1 Mill Lane", "city": "Nakuru", "postal_code": "20100", "country": "KE"}
DL = "https://id.gs1.org"


@pytest.fixture(scope="module")
def chain() -> World:
    w = World.create()
    key = Ed25519PrivateKey.generate()
    w.keys["mill"] = key
    w.ok(
        "registrar",
        "enrol",
        None,
        {
            "subject": did_of(key),
            "type": "party",
            "name": "Mill Ltd",
            "role": "processor",
            "pgln": PACKER_PGLN,
            "address": ADDRESS,
        },
    )
    w.ok(
        "farm",
        "place",
        None,
        {
            "gln": FARM_GLN,
            "name": "Green Valley farm",
            "type": "farm",
            "lat": -0.42,
            "lon": 36.95,
            "address": {"city": "Naivasha", "country": "KE"},
        },
    )
    w.ok(
        "mill",
        "place",
        None,
        {"gln": PACKHOUSE_GLN, "name": "Mill packhouse", "address": ADDRESS, "type": "packhouse"},
    )
    w.ok(
        "farm",
        "commission",
        [LOT2],
        {"gtin": GTIN, "lot": "B9", "product": "Beans", "origin": {"gln": FARM_GLN}},
        time=at(0.2),
    )
    shipped = w.ok(
        "farm", "ship", [LOT2], {"to": did_of(key), "location": {"gln": FARM_GLN}}, time=at(1)
    )
    w.ok(
        "mill",
        "receive",
        [LOT2],
        {"shipment": shipped.event_id, "location": {"gln": PACKHOUSE_GLN}},
        time=at(2),
    )
    return w


@pytest.fixture(scope="module")
def document(chain) -> dict[str, Any]:
    return lot_document(chain.store, LOT2, created="2026-12-06T00:00:00Z")


def _by_kind(document: dict[str, Any], kind: str) -> dict[str, Any]:
    (event,) = [e for e in document["epcisBody"]["eventList"] if e.get(ns("kind")) == kind]
    return event


def test_locations_are_414_uris_even_when_cited_by_gln_alone(document):
    commission = _by_kind(document, "commission")
    assert commission["readPoint"] == commission["bizLocation"] == {"id": f"{DL}/414/{FARM_GLN}"}
    ship = _by_kind(document, "ship")
    assert ship["readPoint"] == {"id": f"{DL}/414/{FARM_GLN}"}
    receive = _by_kind(document, "receive")
    assert receive["readPoint"] == receive["bizLocation"] == {"id": f"{DL}/414/{PACKHOUSE_GLN}"}


def test_source_and_destination_lists_name_pglns_and_locations(chain, document):
    ship = _by_kind(document, "ship")
    farm = chain.did("farm")  # enrolled without a PGLN: named by its did
    assert ship["sourceList"] == [
        {"type": "owning_party", "source": farm},
        {"type": "possessing_party", "source": farm},
        {"type": "location", "source": f"{DL}/414/{FARM_GLN}"},
    ]
    mill = f"{DL}/417/{PACKER_PGLN}"
    assert ship["destinationList"] == [
        {"type": "owning_party", "destination": mill},
        {"type": "possessing_party", "destination": mill},
    ]
    receive = _by_kind(document, "receive")
    assert {"type": "location", "destination": f"{DL}/414/{PACKHOUSE_GLN}"} in receive[
        "destinationList"
    ]
    assert {"type": "possessing_party", "destination": mill} in receive["destinationList"]


def test_master_data_gives_names_and_addresses(document):
    vocabularies = {
        v["type"]: {e["id"]: e["attributes"] for e in v["vocabularyElementList"]}
        for v in document["epcisHeader"]["epcisMasterData"]["vocabularyList"]
    }
    locations = vocabularies[VTYPE_LOCATION]
    packhouse = {a["id"]: a["attribute"] for a in locations[f"{DL}/414/{PACKHOUSE_GLN}"]}
    assert packhouse == {
        "urn:epcglobal:cbv:mda#name": "Mill packhouse",
        "urn:epcglobal:cbv:mda#streetAddressOne": "1 Mill Lane",
        "urn:epcglobal:cbv:mda#city": "Nakuru",
        "urn:epcglobal:cbv:mda#postalCode": "20100",
        "urn:epcglobal:cbv:mda#countryCode": "KE",
        ns("placeType"): "packhouse",
    }
    farm = {a["id"]: a["attribute"] for a in locations[f"{DL}/414/{FARM_GLN}"]}
    assert farm["urn:epcglobal:cbv:mda#latitude"] == -0.42
    assert farm["urn:epcglobal:cbv:mda#name"] == "Green Valley farm"
    parties = vocabularies["urn:epcglobal:epcis:vtype:SourceDest"]
    mill = {a["id"]: a["attribute"] for a in parties[f"{DL}/417/{PACKER_PGLN}"]}
    assert mill["urn:epcglobal:cbv:mda#name"] == "Mill Ltd"
    assert mill["urn:epcglobal:cbv:mda#city"] == "Nakuru"


def test_the_streamed_export_has_the_same_master_data(chain, document):
    out = io.StringIO()
    write_ledger_document(chain.store, out, lot=LOT2, created="2026-12-06T00:00:00Z")
    streamed = json.loads(out.getvalue())
    assert streamed["epcisHeader"] == document["epcisHeader"]
    assert streamed["epcisBody"] == document["epcisBody"]
    whole = io.StringIO()
    write_ledger_document(chain.store, whole, created="2026-12-06T00:00:00Z")
    kinds = {e.get(ns("kind")) for e in json.loads(whole.getvalue())["epcisBody"]["eventList"]}
    assert "place" not in kinds  # registrations are master data, not events


def test_the_documents_validate_and_their_ids_are_the_reference_hashes(chain, document):
    from jsonschema import Draft7Validator

    schema = json.loads(find_schema().read_text(encoding="utf-8"))
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    out = io.StringIO()
    write_ledger_document(chain.store, out, created="2026-12-06T00:00:00Z")
    for name, item in (("lot", document), ("ledger", json.loads(out.getvalue()))):
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(item)]
        assert not errors, (name, errors[:5])

        def ours(doc: dict[str, Any]) -> list[str]:
            prehasher = Prehasher(doc["@context"])
            return [prehasher.prehash(e) for e in doc["epcisBody"]["eventList"]]

        assert check_against_reference(name, item, ours, {}) == []
