"""GS1 EPCIS 2.0 JSON-LD export of ledger events (docs/epcis.md has the mapping table).

The mapping is pure: `epcis_document` and `epcis_events` take envelopes (or `LedgerEvent`s:
an envelope with the lots it was filed under) and two lookups — identities (did →
`PartyInfo`) and lots (lot URI → `LotInfo`) — and return plain dicts ready for
``json.dumps``. `lot_document` is the thin adapter that reads one lot's chain from a
`Store`.

Every EPCIS event carries:

- ``eventID``: its CBV 2.0 Event Hash ID (`provenance.event_hash`), computed over the event
  as exported, so anyone can recompute it;
- ``provenance:eventId`` / ``provenance:signer`` / ``provenance:kind``: the ledger event id
  (hex SHA-256 of the signed envelope), the signer's did and our kind, so a verifier can tie
  the EPCIS event to the signed envelope and its proof bundle. Readings are grouped (one
  ObjectEvent per device, lots and hour); each sensorElement carries the ledger id of its
  reading and the device is the sensorMetadata ``deviceID``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .envelope import Envelope
from .errors import NotFound
from .event_hash import event_hash
from .timefmt import format_time, now_micros, parse_time

if TYPE_CHECKING:  # the adapter only; the mapping never touches the store
    from .store import Store

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
NAMESPACE = "https://provenance.example/ns/epcis/"
PREFIX = "provenance"
CBVMDA = "urn:epcglobal:cbv:mda:"
SCHEMA_VERSION = "2.0"
TIME_ZONE_OFFSET = "+00:00"  # ledger times are UTC
READING_WINDOW_S = 3600  # readings of one device for the same lots, grouped per hour
GS1_STEM = "https://id.gs1.org"
WGS84 = "http://www.opengis.net/def/crs/EPSG/0/4326"
STANDARD_GRAVITY = 9.80665  # m/s² per g (exact, by definition)

# Master data vocabulary types and attributes (CBV).
VTYPE_EPC_CLASS = "urn:epcglobal:epcis:vtype:EPCClass"
VTYPE_SOURCE_DEST = "urn:epcglobal:epcis:vtype:SourceDest"
VTYPE_IDENTITY = NAMESPACE + "Identity"
MDA_NAME = "urn:epcglobal:cbv:mda#name"
MDA_DESCRIPTION = "urn:epcglobal:cbv:mda#descriptionShort"
ATTR_ROLE = NAMESPACE + "role"


def context() -> list[Any]:
    """The document ``@context``: the EPCIS context plus our prefix (and ``cbvmda``, which the
    EPCIS context defines too, inline so that tools reading only inline prefixes agree)."""
    return [EPCIS_CONTEXT, {PREFIX: NAMESPACE, "cbvmda": CBVMDA}]


def ns(name: str) -> str:
    """Our extension key for *name*: ``provenance:name``."""
    return f"{PREFIX}:{name}"


@dataclass(frozen=True)
class PartyInfo:
    """What the export needs to know about a did: a display name, a role (parties; devices
    have "device") and a GLN when the party has one (then ``417`` Digital Link URIs name it)."""

    name: str
    role: str | None = None
    gln: str | None = None


@dataclass(frozen=True)
class LotInfo:
    gtin: str
    lot: str
    product: str


@dataclass(frozen=True)
class LedgerEvent:
    """An envelope with the lot URIs the ledger filed it under (for a reading without
    ``batches``: the lots its device was attached to)."""

    envelope: Envelope
    lots: tuple[str, ...]


IdentityLookup = Callable[[str], PartyInfo | None]
LotLookup = Callable[[str], LotInfo | None]


_GroupKey = tuple[str, tuple[str, ...], int]  # readings grouped by (device did, lots, window)


def _nobody(_key: str) -> None:
    return None


# --- the document


def epcis_document(
    events: Iterable[Envelope | LedgerEvent],
    *,
    created: str,
    identities: IdentityLookup = _nobody,
    lots: LotLookup = _nobody,
    reading_window_s: int = READING_WINDOW_S,
) -> dict[str, Any]:
    """An EPCISDocument of *events*: ``@context``, schemaVersion 2.0, *created* as its
    creationDate, master data for the lots and identities it names (when the lookups know
    them) and ``epcisBody.eventList`` from `epcis_events`."""
    event_list = epcis_events(events, identities=identities, reading_window_s=reading_window_s)
    document: dict[str, Any] = {
        "@context": context(),
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": created,
    }
    vocabularies = master_data(event_list, identities=identities, lots=lots)
    if vocabularies:
        document["epcisHeader"] = {"epcisMasterData": {"vocabularyList": vocabularies}}
    document["epcisBody"] = {"eventList": event_list}
    return document


def epcis_events(
    events: Iterable[Envelope | LedgerEvent],
    *,
    identities: IdentityLookup = _nobody,
    reading_window_s: int = READING_WINDOW_S,
) -> list[dict[str, Any]]:
    """EPCIS 2.0 events for ledger events, sorted by eventTime (ties in input order), each
    with its Event Hash ID as ``eventID``. Identity events (enrol, revoke) have no EPCIS
    counterpart and are left out; readings are grouped (see `reading_event`); an event
    given twice (say, a transform in the chains of its input and its output) appears once."""
    if reading_window_s <= 0:
        raise ValueError("reading_window_s must be positive")
    items: list[LedgerEvent] = []
    seen: set[bytes] = set()
    for item in events:
        filed = item if isinstance(item, LedgerEvent) else _filed(item)
        if filed.envelope.id_bytes not in seen:
            seen.add(filed.envelope.id_bytes)
            items.append(filed)
    mapper = _Mapper(items, identities)
    window_us = reading_window_s * 1_000_000
    slots: list[tuple[int, dict[str, Any] | _GroupKey]] = []  # (input position, event or group)
    groups: dict[_GroupKey, list[LedgerEvent]] = {}
    for position, item in enumerate(items):
        envelope = item.envelope
        if envelope.kind != "reading":
            mapped = mapper.event(item)
            if mapped is not None:
                slots.append((position, mapped))
            continue
        key = (envelope.signer, tuple(sorted(item.lots)), envelope.time_us // window_us)
        if key not in groups:
            groups[key] = []
            slots.append((position, key))
        groups[key].append(item)
    finished = []
    for position, slot in slots:
        event = reading_event(groups[slot]) if isinstance(slot, tuple) else slot
        finished.append((parse_time(event["eventTime"]), position, with_event_id(event)))
    finished.sort(key=lambda entry: entry[:2])
    return [event for _, _, event in finished]


def with_event_id(event: Mapping[str, Any]) -> dict[str, Any]:
    """*event* with ``eventID`` (its Event Hash ID under our context) right after ``type``."""
    rest = {key: value for key, value in event.items() if key not in ("type", "eventID")}
    return {"type": event["type"], "eventID": event_hash(event, context=context()), **rest}


def _filed(envelope: Envelope) -> LedgerEvent:
    return LedgerEvent(envelope, envelope.batches or ())


# --- one ledger event → one EPCIS event


def _base(event_type: str, envelope: Envelope) -> dict[str, Any]:
    return {"type": event_type, "eventTime": envelope.time, "eventTimeZoneOffset": TIME_ZONE_OFFSET}


def _classes(lots: Iterable[str]) -> list[dict[str, Any]]:
    return [{"epcClass": uri} for uri in lots]


def _quantity(uri: str, quantity: Mapping[str, Any] | None) -> dict[str, Any]:
    element: dict[str, Any] = {"epcClass": uri}
    if quantity:
        element["quantity"] = quantity["value"]
        element["uom"] = quantity["unit"]
    return element


def _place(location: Mapping[str, Any] | None) -> dict[str, str] | None:
    """readPoint/bizLocation for a location: its GLN as ``414``, else a ``geo:`` URI."""
    if not location:
        return None
    if location.get("gln"):
        return {"id": f"{GS1_STEM}/414/{location['gln']}"}
    if "lat" in location and "lon" in location:
        return {"id": f"geo:{location['lat']},{location['lon']}"}
    return None


def _prefixed(values: Mapping[str, Any]) -> dict[str, Any]:
    return {ns(key): value for key, value in values.items()}


def _ledger(event: dict[str, Any], envelope: Envelope) -> dict[str, Any]:
    """Add our provenance extension: ledger event id, signer, kind and partner extras."""
    event[ns("eventId")] = envelope.event_id
    event[ns("signer")] = envelope.signer
    event[ns("kind")] = envelope.kind
    if "ext" in envelope.data:
        event[ns("ext")] = envelope.data["ext"]
    return event


class _Mapper:
    def __init__(self, items: list[LedgerEvent], identities: IdentityLookup):
        self.identities = identities
        self.shipments = {
            item.envelope.event_id: item.envelope for item in items if item.envelope.kind == "ship"
        }

    def event(self, item: LedgerEvent) -> dict[str, Any] | None:
        """The EPCIS event of one ledger event; None for enrol and revoke (identities)."""
        mapper = {
            "commission": self._commission,
            "ship": self._ship,
            "receive": self._receive,
            "transform": self._transform,
            "inspect": self._inspect,
            "recall": self._recall,
            "recall-lift": self._recall_lift,
            "dispense": self._dispense,
            "attach": self._attach,
            "detach": self._detach,
        }.get(item.envelope.kind)
        return None if mapper is None else _ledger(mapper(item), item.envelope)

    # parties

    def party(self, did: str) -> str:
        """The URI naming a party: ``417`` GLN URI when it has a GLN, else its did."""
        info = self.identities(did)
        return f"{GS1_STEM}/417/{info.gln}" if info and info.gln else did

    def ends(
        self, field: str, did: str, location: Mapping[str, Any] | None
    ) -> list[dict[str, str]]:
        """sourceList/destinationList entries: the party as owner and possessor (the ledger
        does not model title apart from custody) and the location when it has a GLN."""
        uri = self.party(did)
        ends = [{"type": kind, field: uri} for kind in ("owning_party", "possessing_party")]
        if location and location.get("gln"):
            ends.append({"type": "location", field: f"{GS1_STEM}/414/{location['gln']}"})
        return ends

    # kinds

    def _commission(self, item: LedgerEvent) -> dict[str, Any]:
        envelope, data = item.envelope, item.envelope.data
        event = _base("ObjectEvent", envelope)
        uri = (envelope.batches or item.lots)[0]
        event["quantityList"] = [_quantity(uri, data.get("quantity"))]
        event |= {"action": "ADD", "bizStep": "commissioning", "disposition": "active"}
        origin = data.get("origin") or {}
        place = _place(origin)
        if place:
            event["readPoint"] = place
        ilmd: dict[str, Any] = {}
        if "expiry" in data:
            ilmd["cbvmda:itemExpirationDate"] = data["expiry"]
        if "country" in origin:
            ilmd["cbvmda:countryOfOrigin"] = origin["country"]
        ilmd |= _prefixed(
            {k: data[k] for k in ("product", "category", "profile", "produced") if k in data}
        )
        if origin:
            ilmd[ns("origin")] = _prefixed(origin)
        event["ilmd"] = ilmd
        return event

    def _ship(self, item: LedgerEvent) -> dict[str, Any]:
        envelope, data = item.envelope, item.envelope.data
        location = data.get("location")
        event = _base("ObjectEvent", envelope)
        event["quantityList"] = _classes(item.lots)
        event |= {"action": "OBSERVE", "bizStep": "shipping", "disposition": "in_transit"}
        place = _place(location)
        if place:
            event["readPoint"] = place
        event["sourceList"] = self.ends("source", envelope.signer, location)
        event["destinationList"] = self.ends("destination", data["to"], None)
        if location:
            event[ns("location")] = _prefixed(location)
        return event

    def _receive(self, item: LedgerEvent) -> dict[str, Any]:
        envelope, data = item.envelope, item.envelope.data
        location = data.get("location")
        event = _base("ObjectEvent", envelope)
        event["quantityList"] = _classes(item.lots)
        event |= {"action": "OBSERVE", "bizStep": "receiving", "disposition": "in_progress"}
        place = _place(location)
        if place:
            event["readPoint"] = place
            event["bizLocation"] = dict(place)
        shipment = self.shipments.get(data["shipment"])
        if shipment is not None:
            event["sourceList"] = self.ends(
                "source", shipment.signer, shipment.data.get("location")
            )
        event["destinationList"] = self.ends("destination", envelope.signer, location)
        event[ns("shipment")] = data["shipment"]
        if "condition" in data:
            event[ns("condition")] = data["condition"]
        if location:
            event[ns("location")] = _prefixed(location)
        return event

    def _transform(self, item: LedgerEvent) -> dict[str, Any]:
        envelope, data = item.envelope, item.envelope.data
        event = _base("TransformationEvent", envelope)
        event["inputQuantityList"] = [_quantity(i["batch"], i["quantity"]) for i in data["inputs"]]
        event["outputQuantityList"] = [
            _quantity(o["batch"], o["quantity"]) for o in data["outputs"]
        ]
        place = _place(data.get("location"))
        if place:
            event["readPoint"] = place
            event["bizLocation"] = dict(place)
        details = [
            _prefixed({k: v for k, v in output.items() if k != "quantity"})
            for output in data["outputs"]
            if set(output) - {"batch", "quantity"}
        ]
        if details:
            event[ns("outputs")] = details
        if data.get("location"):
            event[ns("location")] = _prefixed(data["location"])
        return event

    def _inspect(self, item: LedgerEvent) -> dict[str, Any]:
        envelope, data = item.envelope, item.envelope.data
        event = _base("ObjectEvent", envelope)
        document = data.get("document")
        if document:  # RFC 6920 name of the certificate's bytes
            digest = base64.urlsafe_b64encode(bytes.fromhex(document["sha256"])).rstrip(b"=")
            event["certificationInfo"] = "ni:///sha-256;" + digest.decode("ascii")
        event["quantityList"] = _classes(item.lots)
        passed = data["result"] == "pass"
        event |= {
            "action": "OBSERVE",
            "bizStep": "inspecting",
            "disposition": "conformant" if passed else "non_conformant",
            ns("result"): data["result"],
        }
        if document:
            event[ns("document")] = _prefixed(document)
        if "notes" in data:
            event[ns("notes")] = data["notes"]
        return event

    def _recall(self, item: LedgerEvent) -> dict[str, Any]:
        data = item.envelope.data
        event = _base("ObjectEvent", item.envelope)
        event["quantityList"] = _classes(item.lots)
        event |= {
            "action": "OBSERVE",
            "disposition": "recalled",
            "persistentDisposition": {"set": ["recalled"]},
            ns("reason"): data["reason"],
            ns("recallClass"): data["class"],
        }
        if "instructions" in data:
            event[ns("instructions")] = data["instructions"]
        return event

    def _recall_lift(self, item: LedgerEvent) -> dict[str, Any]:
        event = _base("ObjectEvent", item.envelope)
        event["quantityList"] = _classes(item.lots)
        event |= {
            "action": "OBSERVE",
            "persistentDisposition": {"unset": ["recalled"]},
            ns("reason"): item.envelope.data["reason"],
        }
        return event

    def _dispense(self, item: LedgerEvent) -> dict[str, Any]:
        envelope, data = item.envelope, item.envelope.data
        info = self.identities(envelope.signer)
        retail = info is not None and info.role == "retailer"
        event = _base("ObjectEvent", envelope)
        event["quantityList"] = [_quantity(uri, data["quantity"]) for uri in item.lots]
        event |= {
            "action": "OBSERVE",
            "bizStep": "retail_selling" if retail else "dispensing",
            "disposition": "retail_sold" if retail else "dispensed",
        }
        place = _place(data.get("location"))
        if place:
            event["readPoint"] = place
        if data.get("location"):
            event[ns("location")] = _prefixed(data["location"])
        return event

    def _attach(self, item: LedgerEvent, action: str = "ADD") -> dict[str, Any]:
        event = _base("AssociationEvent", item.envelope)
        event["parentID"] = item.envelope.data["device"]
        event["childQuantityList"] = _classes(item.lots)
        event |= {"action": action, "bizStep": "installing" if action == "ADD" else "removing"}
        return event

    def _detach(self, item: LedgerEvent) -> dict[str, Any]:
        return self._attach(item, "DELETE")


# --- readings


def _reports(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    if "temperature_c" in data:
        reports.append({"type": "Temperature", "value": data["temperature_c"], "uom": "CEL"})
    if "humidity_pct" in data:
        reports.append({"type": "RelativeHumidity", "value": data["humidity_pct"], "uom": "P1"})
    for field, component in (("lat", "latitude"), ("lon", "longitude")):
        if field in data:
            reports.append(
                {
                    "type": "Angle",
                    "value": data[field],
                    "component": component,
                    "uom": "DD",
                    "coordinateReferenceSystem": WGS84,
                }
            )
    if "shock_g" in data:
        acceleration = round(data["shock_g"] * STANDARD_GRAVITY, 6)
        reports.append({"type": "Acceleration", "value": acceleration, "uom": "MSK"})
    if "door_open" in data:
        reports.append({"type": ns("DoorOpen"), "booleanValue": data["door_open"]})
    if "battery_pct" in data:
        reports.append({"type": ns("BatteryLevel"), "value": data["battery_pct"], "uom": "P1"})
    return reports


def sensor_element(envelope: Envelope) -> dict[str, Any]:
    """One reading as a sensorElement: its time and device, a sensorReport per measure
    (temperature °C, relative humidity %, latitude/longitude in degrees WGS 84, shock as
    acceleration in m/s², door open, battery %) and its ledger event id."""
    data = envelope.data
    element: dict[str, Any] = {
        "sensorMetadata": {"time": envelope.time, "deviceID": envelope.signer},
        "sensorReport": _reports(data),
        ns("eventId"): envelope.event_id,
    }
    if "sensor" in data:
        element[ns("sensor")] = data["sensor"]
    if "ext" in data:
        element[ns("ext")] = data["ext"]
    return element


def reading_event(readings: list[LedgerEvent]) -> dict[str, Any]:
    """One ObjectEvent (action OBSERVE, bizStep sensor_reporting) for readings of one device
    about the same lots: a sensorElement per reading in time order; eventTime is the last
    reading's time."""
    ordered = sorted(readings, key=lambda r: (r.envelope.time_us, r.envelope.event_id))
    last = ordered[-1].envelope
    event = _base("ObjectEvent", last)
    lots = sorted(ordered[0].lots)
    if lots:
        event["quantityList"] = _classes(lots)
    else:
        event["epcList"] = []
    event |= {
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "sensorElementList": [sensor_element(r.envelope) for r in ordered],
        ns("signer"): last.signer,
        ns("kind"): "reading",
    }
    return event


# --- master data


def master_data(
    events: Iterable[Mapping[str, Any]], *, identities: IdentityLookup, lots: LotLookup
) -> list[dict[str, Any]]:
    """The vocabularyList for the header: products of the lots (EPCClass), names of the
    parties in source/destination lists (SourceDest) and names and roles of the signers and
    devices (our Identity vocabulary) — whatever the lookups know."""
    classes: set[str] = set()
    ends: set[str] = set()
    dids: set[str] = set()
    for event in events:
        for field in (
            "quantityList",
            "inputQuantityList",
            "outputQuantityList",
            "childQuantityList",
        ):
            classes.update(element["epcClass"] for element in event.get(field, ()))
        for field, key in (("sourceList", "source"), ("destinationList", "destination")):
            for end in event.get(field, ()):
                if end["type"] != "location":
                    ends.add(end[key])
        dids.update(d for d in (event.get(ns("signer")), event.get("parentID")) if d)
    vocabularies = []
    elements = []
    for uri in sorted(classes):
        info = lots(uri)
        if info is not None:
            elements.append(
                {"id": uri, "attributes": [{"id": MDA_DESCRIPTION, "attribute": info.product}]}
            )
    if elements:
        vocabularies.append({"type": VTYPE_EPC_CLASS, "vocabularyElementList": elements})
    by_did = {
        did: identities(did) for did in sorted(dids | {e for e in ends if e.startswith("did:")})
    }
    elements = [
        {"id": uri, "attributes": [{"id": MDA_NAME, "attribute": info.name}]}
        for uri in sorted(ends)
        if (info := by_did.get(uri)) is not None
    ]
    if elements:
        vocabularies.append({"type": VTYPE_SOURCE_DEST, "vocabularyElementList": elements})
    elements = []
    for did in sorted(dids):
        info = by_did.get(did)
        if info is None:
            continue
        attributes = [{"id": MDA_NAME, "attribute": info.name}]
        if info.role:
            attributes.append({"id": ATTR_ROLE, "attribute": info.role})
        elements.append({"id": did, "attributes": attributes})
    if elements:
        vocabularies.append({"type": VTYPE_IDENTITY, "vocabularyElementList": elements})
    return vocabularies


# --- adapter: one lot from a Store


def lot_document(
    store: Store,
    lot_uri: str,
    *,
    created: str | None = None,
    reading_window_s: int = READING_WINDOW_S,
) -> dict[str, Any]:
    """The EPCISDocument of every event in *lot_uri*'s chain (``linkType=gs1:traceability``).
    *store* is a `provenance.store.Store`; *created* defaults to now. Raises NotFound for a
    lot the ledger does not have."""
    chain = store.chain_by_subject(lot_uri)
    if chain is None or store.lot_by_uri(lot_uri) is None:
        raise NotFound(f"no lot {lot_uri} in this ledger")
    events = [
        LedgerEvent(stored.envelope, tuple(store.subject(chain_id) for chain_id in stored.lots))
        for stored in store.chain_events(chain[0])
    ]
    return epcis_document(
        events,
        created=created or format_time(now_micros()),
        identities=store_identities(store),
        lots=store_lots(store),
        reading_window_s=reading_window_s,
    )


def store_identities(store: Store) -> IdentityLookup:
    """An identity lookup over a Store (cached per call site)."""
    cache: dict[str, PartyInfo | None] = {}

    def lookup(did: str) -> PartyInfo | None:
        if did not in cache:
            identity = store.identity_by_did(did)
            cache[did] = (
                None
                if identity is None
                else PartyInfo(identity.name, identity.role or identity.type)
            )
        return cache[did]

    return lookup


def store_lots(store: Store) -> LotLookup:
    def lookup(uri: str) -> LotInfo | None:
        lot = store.lot_by_uri(uri)
        return None if lot is None else LotInfo(lot.gtin, lot.lot, lot.product)

    return lookup
