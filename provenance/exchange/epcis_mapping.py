"""One ledger event as one EPCIS 2.0 event: the mapping table of docs/epcis.md in code.

:class:`EventMapper` turns each lot event kind (commission, ship, receive, transform, attach,
…) into its ObjectEvent, AggregationEvent or TransformationEvent with our ``provenance:``
extension (ledger event id, signer, kind); :func:`sensor_element` turns one reading into a
sensorElement and :func:`reading_event` a device's readings into one sensor ObjectEvent;
:func:`with_event_id` adds the CBV 2.0 Event Hash ID. Pure: envelopes and lookups in, plain
dicts out.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from provenance.core.envelope import Envelope
from provenance.core.gs1 import gtin_uri, parse_lot_uri
from provenance.core.kinds import RECALL_RETURN
from provenance.exchange.epcis_pallets import UnitLookup, aggregation, no_units, shipped_units
from provenance.exchange.epcis_vocabulary import (
    GS1_STEM,
    NAMESPACE,
    STANDARD_GRAVITY,
    TIME_ZONE_OFFSET,
    WGS84,
    IdentityLookup,
    LedgerEvent,
    ShipmentLookup,
    context,
    ns,
)
from provenance.exchange.event_hash import Prehasher

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


def _moved(lots: Iterable[str], data: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    """quantityList of a ship or receive: each lot, with the quantity
    data[*field*] names for it (docs/protocol.md, "Quantities"); a lot it
    does not name moved whole and is listed by class alone."""
    named = {item["batch"]: item["quantity"] for item in data.get(field, ())}
    return [_quantity(uri, named.get(uri)) for uri in lots]


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


# The ledger's document types (core/kinds.py DOCUMENT_TYPES) as CBV 2.0 business
# transaction types; "other" has no CBV type, so it gets ours (an untyped entry is valid
# EPCIS, but GS1's reference hasher fails on it, and partners use that tool).
BUSINESS_TRANSACTION_TYPES = {
    "bol": "bol",
    "invoice": "inv",
    "po": "po",
    "asn": "desadv",
    "work-order": "prodorder",
    "other": NAMESPACE + "btt-other",
}


def _ledger(event: dict[str, Any], envelope: Envelope) -> dict[str, Any]:
    """Add our provenance extension: ledger event id, signer, kind and partner extras."""
    event[ns("eventId")] = envelope.event_id
    event[ns("signer")] = envelope.signer
    event[ns("kind")] = envelope.kind
    if "ext" in envelope.data:
        event[ns("ext")] = envelope.data["ext"]
    return event


class EventMapper:
    """Maps one ledger event to its EPCIS event, naming parties through the lookups."""

    def __init__(
        self, identities: IdentityLookup, shipments: ShipmentLookup, units: UnitLookup = no_units
    ):
        self.identities = identities
        self.shipments = shipments
        self.units = units  # cases and pallets: epcis_pallets.py

    def event(self, item: LedgerEvent) -> dict[str, Any] | None:
        """The EPCIS event of one ledger event (without its eventID); None for enrol and
        revoke (identities), readings (grouped) and imported events (kept as they are)."""
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
            "pack": self._aggregation,
            "unpack": self._aggregation,
            "serials": self._serials,
        }.get(item.envelope.kind)
        if mapper is None:
            return None
        event = mapper(item)
        documents = item.envelope.data.get("documents")
        if documents:  # FSMA 204's reference documents (docs/protocol.md §17)
            event["bizTransactionList"] = self.transactions(item.envelope.signer, documents)
        return _ledger(event, item.envelope)

    def transactions(self, did: str, documents: Iterable[Mapping[str, str]]) -> list[dict]:
        """`documents` as a bizTransactionList: CBV 2.0 types (an ASN is `desadv`, a work
        order `prodorder`, "other" our own type), each id `urn:epcglobal:cbv:bt:{PGLN}:{number}`
        when the signer has a PGLN (CBV 2.0 §8.5), else the signer's did with the type and
        number as its fragment."""
        info = self.identities(did)
        found = []
        for document in documents:
            number = quote(document["number"], safe="")
            if info and info.gln:
                uri = f"urn:epcglobal:cbv:bt:{info.gln}:{number}"
            else:
                uri = f"{did}#{document['type']}:{number}"
            kind = BUSINESS_TRANSACTION_TYPES.get(document["type"], NAMESPACE + "btt-other")
            found.append({"type": kind, "bizTransaction": uri})
        return found

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
        uri = (envelope.lots or item.lots)[0]
        event["quantityList"] = [_quantity(uri, data.get("quantity"))]
        event |= {"action": "ADD", "bizStep": "commissioning", "disposition": "active"}
        origin = data.get("origin") or {}
        place = _place(origin)
        if place:
            event["readPoint"] = place
            if origin.get("gln"):  # a place by GLN: where the new lot now is (§15)
                event["bizLocation"] = dict(place)
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
        event["quantityList"] = _moved(item.lots, data, "quantities")
        shipped_units(event, data.get("pallets", ()), self.units)
        # CBV 2.0 disposition "recalled": a recalled lot on its way back.
        returning = data.get("purpose") == RECALL_RETURN
        disposition = "recalled" if returning else "in_transit"
        event |= {"action": "OBSERVE", "bizStep": "shipping", "disposition": disposition}
        place = _place(location)
        if place:
            event["readPoint"] = place
        event["sourceList"] = self.ends("source", envelope.signer, location)
        if returning:
            event[ns("purpose")] = RECALL_RETURN
        event["destinationList"] = self.ends("destination", data["to"], None)
        if location:
            event[ns("location")] = _prefixed(location)
        return event

    def _receive(self, item: LedgerEvent) -> dict[str, Any]:
        envelope, data = item.envelope, item.envelope.data
        location = data.get("location")
        event = _base("ObjectEvent", envelope)
        event["quantityList"] = _moved(item.lots, data, "quantities")
        event |= {"action": "OBSERVE", "bizStep": "receiving", "disposition": "in_progress"}
        place = _place(location)
        if place:
            event["readPoint"] = place
            event["bizLocation"] = dict(place)
        shipment = self.shipments(data["shipment"])
        pallets = data.get("pallets") or (shipment.data.get("pallets") if shipment else None)
        shipped_units(event, pallets or (), self.units)
        if shipment is not None:
            event["sourceList"] = self.ends(
                "source", shipment.signer, shipment.data.get("location")
            )
        event["destinationList"] = self.ends("destination", envelope.signer, location)
        event[ns("shipment")] = data["shipment"]
        if "condition" in data:
            event[ns("condition")] = data["condition"]
        if "damaged" in data:
            event[ns("damaged")] = _moved([i["batch"] for i in data["damaged"]], data, "damaged")
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

    def _aggregation(self, item: LedgerEvent) -> dict[str, Any]:
        base = _base("AggregationEvent", item.envelope)
        return aggregation(base, item.envelope, item.lots, self.units)

    def _serials(self, item: LedgerEvent) -> dict[str, Any]:
        """Serials issued for a lot: instance-level commissioning, each pack an SGTIN in
        its canonical Digital Link (``/01/{gtin}/21/{serial}``), its lot in the ILMD."""
        envelope = item.envelope
        gtin, lot = parse_lot_uri((envelope.lots or item.lots)[0])
        event = _base("ObjectEvent", envelope)
        event["epcList"] = [
            gtin_uri(gtin, serial=serial, base=GS1_STEM) for serial in envelope.data["serials"]
        ]
        event |= {"action": "ADD", "bizStep": "commissioning", "disposition": "active"}
        event["ilmd"] = {"cbvmda:lotNumber": lot}
        return event


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
    elements = [sensor_element(r.envelope) for r in ordered]
    return sensor_event(last.signer, tuple(sorted(ordered[0].lots)), elements, last.time)


def sensor_event(
    device: str, lots: tuple[str, ...], elements: list[Any], last_time: str
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "ObjectEvent",
        "eventTime": last_time,
        "eventTimeZoneOffset": TIME_ZONE_OFFSET,
    }
    if lots:
        event["quantityList"] = _classes(lots)
    else:
        event["epcList"] = []
    event |= {
        "action": "OBSERVE",
        "bizStep": "sensor_reporting",
        "sensorElementList": elements,
        ns("signer"): device,
        ns("kind"): "reading",
    }
    return event


def with_event_id(event: Mapping[str, Any], prehasher: Prehasher | None = None) -> dict[str, Any]:
    """*event* with ``eventID`` (its Event Hash ID under our context) right after ``type``.
    Pass a `Prehasher` of `context()` to share its memo across many events."""
    rest = {key: value for key, value in event.items() if key not in ("type", "eventID")}
    event_id = (prehasher or Prehasher(context())).event_hash(event)
    return {"type": event["type"], "eventID": event_id, **rest}
