"""GS1 EPCIS 2.0 JSON-LD export of ledger events (docs/epcis.md has the mapping table).

The mapping is pure: `epcis_document` and `epcis_events` take envelopes (or `LedgerEvent`s:
an envelope with the lots it was filed under) and lookups — identities (did → `PartyInfo`),
lots (lot URI → `LotInfo`) and, optionally, shipments (ship event id → its envelope) — and
return plain dicts ready for ``json.dumps``. `write_document` is the same mapping written
as a stream, for whole ledgers: finished events wait in a temporary file, not in memory.
`lot_document`, `ledger_events` and `write_ledger_document` are the thin adapters that read
a `Store`.

Every exported ledger event carries:

- ``eventID``: its CBV 2.0 Event Hash ID (`provenance.exchange.event_hash`), computed over the event
  as exported, so anyone can recompute it;
- ``provenance:eventId`` / ``provenance:signer`` / ``provenance:kind``: the ledger event id
  (hex SHA-256 of the signed envelope), the signer's did and our kind, so a verifier can tie
  the EPCIS event to the signed envelope and its proof bundle. Readings are grouped (one
  ObjectEvent per device, lots and hour); each sensorElement carries the ledger id of its
  reading and the device is the sensorMetadata ``deviceID``.

Events imported from partners (kind ``epcis``) are the exception: they are written exactly
as stored — the partner's event, with its own ``eventID`` — and get none of our fields.
"""

from __future__ import annotations

import base64
import json
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from provenance.core.envelope import Envelope
from provenance.core.errors import NotFound
from provenance.core.kinds import RECALL_RETURN
from provenance.core.timefmt import format_time, now_micros
from provenance.exchange.event_hash import Prehasher

if TYPE_CHECKING:  # the adapters only; the mapping never touches the store
    from provenance.store.db import Store

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
# Our user-extension namespace (docs/epcis.md, "The namespace"): a W3C Permanent Identifier
# (w3id.org), so it outlives any host the project moves to. It ends in "/" because GS1's
# reference event hasher treats a key as an extension of its structure (a sensorElement…)
# only then. It is part of the pre-hash string of every exported ledger event: changing it
# changes every eventID (docs/epcis.md has the migration note).
NAMESPACE = "https://w3id.org/provenance-ledger/epcis/"
PREFIX = "provenance"
CBVMDA = "urn:epcglobal:cbv:mda:"
SCHEMA_VERSION = "2.0"
TIME_ZONE_OFFSET = "+00:00"  # ledger times are UTC
READING_WINDOW_S = 3600  # readings of one device for the same lots, grouped per hour
GS1_STEM = "https://id.gs1.org"
WGS84 = "http://www.opengis.net/def/crs/EPSG/0/4326"
STANDARD_GRAVITY = 9.80665  # m/s² per g (exact, by definition)
IMPORTED = "epcis"  # the kind of events imported from partners' EPCIS documents
# No EPCIS counterpart: identities and their GS1 prefixes are master data.
IDENTITY_KINDS = ("enrol", "revoke", "grant")

# Master data vocabulary types and attributes (CBV).
VTYPE_EPC_CLASS = "urn:epcglobal:epcis:vtype:EPCClass"
VTYPE_SOURCE_DEST = "urn:epcglobal:epcis:vtype:SourceDest"
VTYPE_IDENTITY = NAMESPACE + "Identity"
MDA_NAME = "urn:epcglobal:cbv:mda#name"
MDA_DESCRIPTION = "urn:epcglobal:cbv:mda#descriptionShort"
ATTR_ROLE = NAMESPACE + "role"

_QUANTITY_LISTS = ("quantityList", "inputQuantityList", "outputQuantityList", "childQuantityList")


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
    """An envelope with the subjects of the chains the ledger filed it under: lot URIs (for a
    reading without ``batches``: the lots its device was attached to), or for an imported
    event without ``batches`` its signer's EPCIS stream."""

    envelope: Envelope
    lots: tuple[str, ...]


IdentityLookup = Callable[[str], PartyInfo | None]
LotLookup = Callable[[str], LotInfo | None]
ShipmentLookup = Callable[[str], Envelope | None]


_GroupKey = tuple[str, tuple[str, ...], int]  # readings grouped by (device did, lots, window)


def _nobody(_key: str) -> None:
    return None


def dumps(value: Any) -> str:
    """Compact JSON text as the export writes it (UTF-8 characters kept, no NaN)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# --- the document


def epcis_document(
    events: Iterable[Envelope | LedgerEvent],
    *,
    created: str,
    identities: IdentityLookup = _nobody,
    lots: LotLookup = _nobody,
    shipments: ShipmentLookup | None = None,
    reading_window_s: int = READING_WINDOW_S,
) -> dict[str, Any]:
    """An EPCISDocument of *events*: ``@context``, schemaVersion 2.0, *created* as its
    creationDate, master data for the lots and identities it names (when the lookups know
    them) and ``epcisBody.eventList`` from `epcis_events`."""
    event_list = epcis_events(
        events, identities=identities, shipments=shipments, reading_window_s=reading_window_s
    )
    document = _shell(created)
    vocabularies = master_data(event_list, identities=identities, lots=lots)
    if vocabularies:
        document["epcisHeader"] = {"epcisMasterData": {"vocabularyList": vocabularies}}
    document["epcisBody"] = {"eventList": event_list}
    return document


def _shell(created: str) -> dict[str, Any]:
    return {
        "@context": context(),
        "type": "EPCISDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": created,
    }


def epcis_events(
    events: Iterable[Envelope | LedgerEvent],
    *,
    identities: IdentityLookup = _nobody,
    shipments: ShipmentLookup | None = None,
    reading_window_s: int = READING_WINDOW_S,
) -> list[dict[str, Any]]:
    """EPCIS 2.0 events for ledger events, sorted by eventTime (ties in input order), each
    with its Event Hash ID as ``eventID``. Identity events (enrol, revoke) have no EPCIS
    counterpart and are left out; readings are grouped (see `reading_event`); an event
    given twice (say, a transform in the chains of its input and its output) appears once;
    imported events (kind ``epcis``) are given back as stored.

    A receive names its shipment's sender when *shipments* finds the ship event (by
    default: when it is among *events*)."""
    items = _unique(_filed(item) for item in events)
    if shipments is None:
        known = {i.envelope.event_id: i.envelope for i in items if i.envelope.kind == "ship"}
        shipments = known.get
    collector = _Collector(_Mapper(identities, shipments), reading_window_s, _Memory())
    for item in items:
        collector.add(item)
    return list(collector.finished())


def write_document(
    out: IO[str],
    events: Iterable[Envelope | LedgerEvent],
    *,
    created: str,
    identities: IdentityLookup = _nobody,
    lots: LotLookup = _nobody,
    shipments: ShipmentLookup | None = None,
    reading_window_s: int = READING_WINDOW_S,
    unique: bool = False,
) -> int:
    """Write the EPCISDocument of *events* to *out* as JSON — the same document as
    `epcis_document` — and return how many events it holds.

    Built for whole ledgers: each finished event (and each reading's sensorElement) is
    spilled to a temporary file as it is mapped, so memory holds only a few integers per
    event until the events are written in time order. Pass ``unique=True`` when *events*
    cannot repeat (a walk of the log), which saves the set of ids seen. Events come out
    one per line. Without *shipments*, a receive finds its ship event among the events
    before it (in log or chain order, a ship always comes before its receive)."""
    if not unique:
        events = _unique(_filed(item) for item in events)
    seen: dict[str, Envelope] = {}
    with tempfile.TemporaryFile() as spill:
        mapper = _Mapper(identities, shipments or seen.get)
        collector = _Collector(mapper, reading_window_s, _Spill(spill))
        for item in events:
            filed = _filed(item)
            if shipments is None and filed.envelope.kind == "ship":
                seen[filed.envelope.event_id] = filed.envelope
            collector.add(filed)
        document = _shell(created)
        vocabularies = collector.references.vocabularies(identities, lots)
        if vocabularies:
            document["epcisHeader"] = {"epcisMasterData": {"vocabularyList": vocabularies}}
        head = dumps(document)[:-1]  # without the closing brace
        out.write(head + ',"epcisBody":{"eventList":[')
        count = 0
        for text in collector.finished_text():
            out.write(("\n" if count == 0 else ",\n") + text)
            count += 1
        out.write("\n]}}\n")
    return count


def with_event_id(event: Mapping[str, Any], prehasher: Prehasher | None = None) -> dict[str, Any]:
    """*event* with ``eventID`` (its Event Hash ID under our context) right after ``type``.
    Pass a `Prehasher` of `context()` to share its memo across many events."""
    rest = {key: value for key, value in event.items() if key not in ("type", "eventID")}
    event_id = (prehasher or Prehasher(context())).event_hash(event)
    return {"type": event["type"], "eventID": event_id, **rest}


def _filed(item: Envelope | LedgerEvent) -> LedgerEvent:
    return item if isinstance(item, LedgerEvent) else LedgerEvent(item, item.batches or ())


def _unique(items: Iterable[LedgerEvent]) -> list[LedgerEvent]:
    seen: set[bytes] = set()
    unique = []
    for item in items:
        if item.envelope.id_bytes not in seen:
            seen.add(item.envelope.id_bytes)
            unique.append(item)
    return unique


# --- collecting: events in input order, readings into groups, then out in time order


class _Memory:
    """Keeps finished events and readings (sensorElement, pre-hash piece) as objects."""

    def __init__(self) -> None:
        self.objects: list[Any] = []

    def put(self, value: Any) -> tuple[int, int]:
        self.objects.append(value)
        return len(self.objects) - 1, 0

    def put_reading(self, element: dict[str, Any], piece: str) -> tuple[int, int]:
        return self.put((element, piece))

    def get(self, a: int, _b: int) -> Any:
        return self.objects[a]

    def text(self, a: int, _b: int) -> str:
        return dumps(self.objects[a])

    def readings(self, handles: Iterable[tuple[int, int]]) -> tuple[list[Any], list[str]]:
        pairs = [self.objects[a] for a, _ in handles]
        return [element for element, _ in pairs], [piece for _, piece in pairs]


class _Spill:
    """Keeps finished events and readings as text in a temporary file — an event as its
    JSON, a reading as its sensorElement's JSON, a newline and its pre-hash piece — so that
    (offset, length) is all memory holds of each."""

    def __init__(self, file: IO[bytes]):
        self.file = file
        self.size = 0

    def _write(self, text: str) -> tuple[int, int]:
        data = text.encode("utf-8")
        self.file.write(data)
        offset, self.size = self.size, self.size + len(data)
        return offset, len(data)

    def put(self, value: Any) -> tuple[int, int]:
        return self._write(dumps(value))

    def put_reading(self, element: dict[str, Any], piece: str) -> tuple[int, int]:
        return self._write(dumps(element) + "\n" + piece)  # JSON text has no raw newline

    def text(self, a: int, b: int) -> str:
        self.file.seek(a)
        return self.file.read(b).decode("utf-8")

    def get(self, a: int, b: int) -> Any:
        return json.loads(self.text(a, b))

    def readings(self, handles: Iterable[tuple[int, int]]) -> tuple[list[str], list[str]]:
        texts, pieces = [], []
        for a, b in handles:
            text, piece = self.text(a, b).split("\n", 1)
            texts.append(text)
            pieces.append(piece)
        return texts, pieces


class _ReadingGroup:
    """The readings of one sensor event: their times, the first 8 bytes of their ids (for
    ties), where they are kept, and the time text of the last one (the event's time)."""

    __slots__ = ("handles", "ids", "key", "last", "last_time", "times")

    def __init__(self, key: _GroupKey):
        self.key = key
        self.times = array("q")
        self.ids = array("Q")
        self.handles = array("q")
        self.last: tuple[int, int] = (-1, -1)
        self.last_time = ""

    def add(self, envelope: Envelope, handle: tuple[int, int]) -> None:
        moment = (envelope.time_us, int.from_bytes(envelope.id_bytes[:8], "big"))
        self.times.append(moment[0])
        self.ids.append(moment[1])
        self.handles.extend(handle)
        if moment > self.last:
            self.last, self.last_time = moment, envelope.time

    def ordered_handles(self) -> list[tuple[int, int]]:
        """Where the readings are kept, ordered by (time, id)."""
        order = sorted(range(len(self.times)), key=lambda i: (self.times[i], self.ids[i]))
        return [(self.handles[2 * i], self.handles[2 * i + 1]) for i in order]


_SENSOR_PLACEHOLDER = '"sensorElementList":[]'


class _Collector:
    def __init__(self, mapper: _Mapper, reading_window_s: int, keeper: _Memory | _Spill):
        if reading_window_s <= 0:
            raise ValueError("reading_window_s must be positive")
        self.mapper = mapper
        self.window_us = reading_window_s * 1_000_000
        self.keeper = keeper
        self.prehasher = Prehasher(context())
        self.references = _References()
        # One slot per finished event or reading group, in input order: its sort time, and
        # either a kept event (a, b) or a group (-1, group index).
        self.times = array("q")
        self.slots = array("q")
        self.groups: list[_ReadingGroup] = []
        self.group_of: dict[_GroupKey, int] = {}

    def add(self, item: LedgerEvent) -> None:
        envelope = item.envelope
        if envelope.kind == "reading":
            key = (envelope.signer, tuple(sorted(item.lots)), envelope.time_us // self.window_us)
            index = self.group_of.get(key)
            if index is None:
                index = self.group_of[key] = len(self.groups)
                self.groups.append(_ReadingGroup(key))
                self.times.append(envelope.time_us)
                self.slots.extend((-1, index))
                self.references.add_reading(envelope.signer, key[1])
            element = sensor_element(envelope)
            piece = self.prehasher.sensor_piece(element)
            self.groups[index].add(envelope, self.keeper.put_reading(element, piece))
            return
        if envelope.kind == IMPORTED:
            event = envelope.data["event"]  # verbatim: the partner's event and eventID
        else:
            mapped = self.mapper.event(item)
            if mapped is None:
                return
            event = with_event_id(mapped, self.prehasher)
        self.references.add(event)
        self.times.append(envelope.time_us)
        self.slots.extend(self.keeper.put(event))

    def _ordered(self) -> Iterator[tuple[int, int]]:
        for slot in range(len(self.times)):  # a group sorts by the time of its last reading
            if self.slots[2 * slot] == -1:
                self.times[slot] = self.groups[self.slots[2 * slot + 1]].last[0]
        for slot in sorted(range(len(self.times)), key=self.times.__getitem__):
            yield self.slots[2 * slot], self.slots[2 * slot + 1]

    def _group(self, index: int) -> tuple[dict[str, Any], list[Any]]:
        """A group's event with its eventID but an empty sensorElementList, and its
        sensorElements (objects or JSON text, as kept) in order."""
        group = self.groups[index]
        elements, pieces = self.keeper.readings(group.ordered_handles())
        device, lots, _ = group.key
        shell = _sensor_event(device, lots, [], group.last_time)
        event_id = self.prehasher.event_hash(shell, sensor_pieces=pieces)
        return {"type": shell.pop("type"), "eventID": event_id, **shell}, elements

    def finished(self) -> Iterator[dict[str, Any]]:
        """The events as objects, in time order."""
        for a, b in self._ordered():
            if a != -1:
                yield self.keeper.get(a, b)
                continue
            event, elements = self._group(b)
            event["sensorElementList"] = elements
            yield event

    def finished_text(self) -> Iterator[str]:
        """The events as JSON text, in time order."""
        for a, b in self._ordered():
            if a != -1:
                yield self.keeper.text(a, b)
                continue
            event, elements = self._group(b)
            texts = [e if isinstance(e, str) else dumps(e) for e in elements]
            yield dumps(event).replace(
                _SENSOR_PLACEHOLDER, '"sensorElementList":[' + ",".join(texts) + "]", 1
            )


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
    def __init__(self, identities: IdentityLookup, shipments: ShipmentLookup):
        self.identities = identities
        self.shipments = shipments

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
        event["quantityList"] = _classes(item.lots)
        event |= {"action": "OBSERVE", "bizStep": "receiving", "disposition": "in_progress"}
        place = _place(location)
        if place:
            event["readPoint"] = place
            event["bizLocation"] = dict(place)
        shipment = self.shipments(data["shipment"])
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
    elements = [sensor_element(r.envelope) for r in ordered]
    return _sensor_event(last.signer, tuple(sorted(ordered[0].lots)), elements, last.time)


def _sensor_event(
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


# --- master data


class _References:
    """What the events name that master data can describe: lot classes, parties in source
    and destination lists, signers and devices."""

    def __init__(self) -> None:
        self.classes: set[str] = set()
        self.ends: set[str] = set()
        self.dids: set[str] = set()

    def add(self, event: Mapping[str, Any]) -> None:
        for field in _QUANTITY_LISTS:
            for element in event.get(field) or ():
                if isinstance(element, Mapping) and isinstance(element.get("epcClass"), str):
                    self.classes.add(element["epcClass"])
        for field, key in (("sourceList", "source"), ("destinationList", "destination")):
            for end in event.get(field) or ():
                if (
                    isinstance(end, Mapping)
                    and end.get("type") != "location"
                    and isinstance(end.get(key), str)
                ):
                    self.ends.add(end[key])
        for did in (event.get(ns("signer")), event.get("parentID")):
            if isinstance(did, str) and did:
                self.dids.add(did)

    def add_reading(self, device: str, lots: Iterable[str]) -> None:
        self.classes.update(lots)
        self.dids.add(device)

    def vocabularies(self, identities: IdentityLookup, lots: LotLookup) -> list[dict[str, Any]]:
        vocabularies = []
        elements = []
        for uri in sorted(self.classes):
            info = lots(uri)
            if info is not None:
                elements.append(
                    {"id": uri, "attributes": [{"id": MDA_DESCRIPTION, "attribute": info.product}]}
                )
        if elements:
            vocabularies.append({"type": VTYPE_EPC_CLASS, "vocabularyElementList": elements})
        named = self.dids | {end for end in self.ends if end.startswith("did:")}
        by_did = {did: identities(did) for did in sorted(named)}
        elements = [
            {"id": uri, "attributes": [{"id": MDA_NAME, "attribute": info.name}]}
            for uri in sorted(self.ends)
            if (info := by_did.get(uri)) is not None
        ]
        if elements:
            vocabularies.append({"type": VTYPE_SOURCE_DEST, "vocabularyElementList": elements})
        elements = []
        for did in sorted(self.dids):
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


def master_data(
    events: Iterable[Mapping[str, Any]], *, identities: IdentityLookup, lots: LotLookup
) -> list[dict[str, Any]]:
    """The vocabularyList for the header: products of the lots (EPCClass), names of the
    parties in source/destination lists (SourceDest) and names and roles of the signers and
    devices (our Identity vocabulary) — whatever the lookups know."""
    references = _References()
    for event in events:
        references.add(event)
    return references.vocabularies(identities, lots)


# --- adapters: a Store


def lot_document(
    store: Store,
    lot_uri: str,
    *,
    created: str | None = None,
    reading_window_s: int = READING_WINDOW_S,
) -> dict[str, Any]:
    """The EPCISDocument of every event in *lot_uri*'s chain (``linkType=gs1:traceability``).
    *store* is a `provenance.store.db.Store`; *created* defaults to now. Raises NotFound for a
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


def ledger_events(
    store: Store,
    *,
    lot: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    product: str | None = None,
) -> Iterator[LedgerEvent]:
    """The ledger's lot events (every kind but enrol, revoke and grant) in log order, or one lot's
    chain in chain order (*lot*; NotFound if the ledger has no such lot), keeping those with
    ``since_us <= time < until_us`` (microseconds) and, with *product*, those filed under a
    lot whose product name contains it (case-insensitive)."""
    wanted: set[str] | None = None
    if product is not None:
        needle = product.casefold()
        wanted = {info.uri for info in store.lots() if needle in info.product.casefold()}
    if lot is not None:
        chain = store.chain_by_subject(lot)
        if chain is None or store.lot_by_uri(lot) is None:
            raise NotFound(f"no lot {lot} in this ledger")
        stored_events: Iterable[Any] = store.chain_events(chain[0])
    else:
        rows = store.event_rows(kinds=IDENTITY_KINDS, exclude=True)
        stored_events = (store.event_from_row(row) for row in rows)
    for stored in stored_events:
        envelope = stored.envelope
        if since_us is not None or until_us is not None:
            moment = envelope.time_us
            if (since_us is not None and moment < since_us) or (
                until_us is not None and moment >= until_us
            ):
                continue
        lots = tuple(store.subject(chain_id) for chain_id in stored.lots)
        if wanted is not None and wanted.isdisjoint(lots):
            continue
        yield LedgerEvent(envelope, lots)


def write_ledger_document(
    store: Store,
    out: IO[str],
    *,
    lot: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    product: str | None = None,
    created: str | None = None,
    reading_window_s: int = READING_WINDOW_S,
) -> int:
    """Write the EPCISDocument of the ledger (or of one lot), filtered as `ledger_events`
    filters, to *out*, from one consistent read of the store; returns the number of EPCIS
    events written. A receive whose shipment falls outside the filter still names its
    sender (the ship event is looked up)."""
    with store.snapshot():
        return write_document(
            out,
            ledger_events(store, lot=lot, since_us=since_us, until_us=until_us, product=product),
            created=created or format_time(now_micros()),
            identities=store_identities(store),
            lots=store_lots(store),
            shipments=store_shipments(store),
            reading_window_s=reading_window_s,
            unique=lot is None,
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


def store_shipments(store: Store) -> ShipmentLookup:
    """Ship events by ledger event id, from a Store (cached per call site)."""
    cache: dict[str, Envelope | None] = {}

    def lookup(event_id: str) -> Envelope | None:
        if event_id not in cache:
            try:
                stored = store.find_event(bytes.fromhex(event_id))
            except ValueError:
                stored = None
            found = stored.envelope if stored is not None else None
            cache[event_id] = found if found is not None and found.kind == "ship" else None
        return cache[event_id]

    return lookup
