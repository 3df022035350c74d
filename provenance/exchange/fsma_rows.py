"""FSMA 204 rows from ledger events, pure: events and `Lookups` in, rows out (tuples in
the column map's order, :mod:`provenance.exchange.fsma_columns`; typed cells: `date`,
`time`, numbers, text, None for empty). The store adapter and the writers are
:mod:`provenance.exchange.fsma204`'s; docs/fsma204.md says which event is which CTE.

Each row is built as its facts, named as the column map's `fill` names them, then laid
out in the map's order, so a column added to the map is a fact added here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, time
from functools import lru_cache
from typing import Any, NamedTuple

from provenance.core import gs1
from provenance.core.envelope import Envelope
from provenance.exchange.epcis_text import as_list, ends, place, quantities, short_name
from provenance.exchange.epcis_vocabulary import IMPORTED, LedgerEvent
from provenance.exchange.fsma_columns import (
    COOLING,
    FILLS,
    FIRST_LAND_BASED_RECEIVING,
    HARVESTING,
    HEADER,
    INITIAL_PACKING,
    RECEIVING,
    SHIPPING,
    TRANSFORMATION,
)
from provenance.exchange.places import Registry, nowhere, resolve_location
from provenance.exchange.spreadsheet import Row

REFERENCE_TYPE = "Provenance ledger record"  # a "database record" in § 1.1310's sense
CTE_KINDS = ("commission", "cool", "ship", "receive", "transform", IMPORTED)
_PRODUCT = HEADER.index("Product Description")

# UN/CEFACT Rec 20 codes the ledger's quantities use, as words a reader knows.
UNITS = {
    "KGM": "kilogram",
    "GRM": "gram",
    "TNE": "tonne",
    "LBR": "pound",
    "ONZ": "ounce",
    "LTR": "litre",
    "MLT": "millilitre",
    "GLL": "gallon (US)",
    "EA": "each",
    "H87": "piece",
    "CS": "case",
    "CT": "carton",
    "BX": "box",
    "PK": "pack",
    "BG": "bag",
    "PX": "pallet",
    "XPX": "pallet",
    "DZN": "dozen",
    "VI": "vial",
    "DOS": "dose",
}
# EPCIS business transaction types (CBV 2.0) as reference document types.
DOCUMENT_TYPES = {
    "po": "Purchase order",
    "poc": "Purchase order confirmation",
    "bol": "Bill of lading",
    "desadv": "Despatch advice",
    "inv": "Invoice",
    "recadv": "Receiving advice",
    "prodorder": "Production order",
    "rma": "Return merchandise authorisation",
    "pedigree": "Pedigree",
    "cert": "Certificate",
}
# The ledger's own `documents` types (core/kinds.py DOCUMENT_TYPES) as a reader names them.
LEDGER_DOCUMENT_TYPES = {
    "bol": "Bill of lading",
    "invoice": "Invoice",
    "po": "Purchase order",
    "asn": "Advance shipping notice",
    "work-order": "Work order",
    "other": "Other",
}
# A commission's `cte` (core/kinds.py COMMISSION_CTES) as the row's CTE.
COMMISSION_CTES = {
    "harvesting": HARVESTING,
    "initial-packing": INITIAL_PACKING,
    "first-land-based-receiving": FIRST_LAND_BASED_RECEIVING,
}


@lru_cache(maxsize=1024)
def unit_text(code: str | None) -> str | None:
    """``KGM (kilogram)`` for a Rec 20 code we know, else the code as recorded."""
    if not code:
        return None
    name = UNITS.get(code)
    return f"{code} ({name})" if name else code


@dataclass(frozen=True)
class TradingPartner:
    """A business as a row names it: its name in the ledger and its role."""

    name: str
    role: str | None = None


class TraceabilityLot(NamedTuple):
    """What a row needs about a lot: its product, registered quantity (by the commission or
    transform that made it), where its TLC was assigned, and its variety. (A named tuple:
    one is made per lot, so it is made cheaply.)"""

    gtin: str
    lot: str
    product: str
    quantity: float | None = None
    unit: str | None = None
    source_location: str | None = None
    source_reference: str | None = None
    variety: str | None = None


class ShipmentOrigin(NamedTuple):
    """What a receiving row needs of the ship event it closes: who shipped, from where."""

    signer: str
    location: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, envelope: Envelope) -> ShipmentOrigin:
        return cls(envelope.signer, envelope.data.get("location"))


@dataclass(frozen=True)
class Lookups:
    parties: Callable[[str], TradingPartner | None]
    lots: Callable[[str], TraceabilityLot | None]
    shipments: Callable[[str], ShipmentOrigin | None]
    # registered places by GLN: a location cited as {"gln": …} is described in full
    places: Registry = nowhere


def _address(address: Any) -> str | None:
    """A postal address (the `places` shape: street, city, region, postal_code) as one
    cell's text; the country is written with the place."""
    if not isinstance(address, dict):
        return None
    parts = [address.get(key) for key in ("street", "city", "region", "postal_code")]
    return ", ".join(str(part) for part in parts if part) or None


def location_description(
    party: TradingPartner | None, location: Mapping[str, Any] | None
) -> str | None:
    """The business (its name in the ledger) and the place: the location's name, address,
    country, GLN and coordinates, whichever are known."""
    parts = [party.name] if party else []
    if not location:
        return "; ".join(parts) or None
    if location.get("name"):
        parts.append(str(location["name"]))
    address = location.get("address")
    country = location.get("country")
    if address:
        street = _address(address)
        if street:
            parts.append(street)
        if not country and isinstance(address, dict):
            country = address.get("country")
    if country:
        parts.append(str(country))
    if location.get("gln"):
        parts.append(f"GLN {location['gln']}")
    if "lat" in location and "lon" in location:
        parts.append(f"{location['lat']}, {location['lon']}")
    return "; ".join(parts) or None


def tlc(gtin: str, lot: str) -> str:
    """The traceability lot code as a GS1 element string: ``(01){GTIN-14}(10){lot}``."""
    return f"(01){gtin}(10){lot}"


def _when(envelope: Envelope) -> tuple[date, time]:
    """The UTC date and time (to the second) of an envelope's ``time``."""
    text = envelope.time  # YYYY-MM-DDTHH:MM:SS[.f]Z, validated
    return _day(text[:10]), time.fromisoformat(text[11:19])


@lru_cache(maxsize=4096)
def _day(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _split_lot(uri: str) -> tuple[str, str] | None:
    """(GTIN-14, lot) of a canonical lot URI."""
    try:
        return gs1.parse_lot_uri(uri)
    except ValueError:
        return None


def _documents(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An event's `documents` as (type as a reader names it, number)."""
    if "documents" not in data:
        return []
    return [
        (LEDGER_DOCUMENT_TYPES.get(item.get("type"), "Other"), str(item.get("number")))
        for item in as_list(data["documents"])
        if isinstance(item, dict) and item.get("number")
    ]


def _moved(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A ship's or receive's per-lot `quantities` (the `quantities` work's shape:
    ``[{"batch", "quantity": {"value", "unit"}}]``), by lot; a lot not listed moves whole."""
    if "quantities" not in data:
        return {}
    return {
        item["batch"]: item["quantity"]
        for item in as_list(data["quantities"])
        if isinstance(item, dict)
        and isinstance(item.get("batch"), str)
        and isinstance(item.get("quantity"), dict)
    }


def _vessel(vessel: Mapping[str, Any]) -> str:
    parts = [str(vessel.get("name"))]
    if vessel.get("id"):
        parts.append(str(vessel["id"]))
    if vessel.get("flag"):
        parts.append(f"flag {vessel['flag']}")
    return "; ".join(parts)


# --- events → rows


PLACE_CACHE = 4096  # location descriptions kept (places and parties repeat); then cleared


class PlaceDescriptions:
    """`location_description` of a party (by did) at a location, remembered: the same
    places and parties come back row after row. Locations with nested values (an
    address) are described each time."""

    def __init__(
        self, parties: Callable[[str], TradingPartner | None], registry: Registry = nowhere
    ):
        self.parties = parties
        self.registry = registry
        self.known: dict[Any, str | None] = {}

    def __call__(self, did: str | None, location: Mapping[str, Any] | None) -> str | None:
        if location and "gln" in location and self.registry is not nowhere:
            location = resolve_location(location, self.registry)
        key = (did, tuple(location.items()) if location else None)
        try:
            return self.known[key]
        except KeyError:
            pass
        except TypeError:  # a nested value: not hashable, not remembered
            return location_description(self.parties(did) if did else None, location)
        if len(self.known) >= PLACE_CACHE:
            self.known.clear()
        found = self.known[key] = location_description(self.parties(did) if did else None, location)
        return found


class _Rows:
    def __init__(self, lookups: Lookups):
        self.lookups = lookups
        self.place = PlaceDescriptions(lookups.parties, lookups.places)
        self.handlers = {
            "commission": self._commission,
            "cool": self._cool,
            "ship": self._ship,
            "receive": self._receive,
            "transform": self._transform,
            IMPORTED: self._epcis,
        }

    def row(
        self,
        cte: str,
        envelope: Envelope,
        uri: str,
        *,
        quantity: Mapping[str, Any] | None = None,
        references: Iterable[tuple[str, str]] = (),
        product: str | None = None,
        fallback_source: str | None = None,
        **facts: Any,
    ) -> Row:
        """One row: the lot's and the event's facts, and *facts* (named as the column
        map's fills), laid out in the map's order."""
        lot = self.lookups.lots(uri)
        if lot is not None:
            gtin, code, product = lot.gtin, lot.lot, product or lot.product
        else:
            gtin, code = _split_lot(uri) or ("", "")
        if quantity:
            value, unit = quantity.get("value"), quantity.get("unit")
        elif lot is not None:
            value, unit = lot.quantity, lot.unit
        else:
            value, unit = None, None
        day, moment = _when(envelope)
        signer = self.lookups.parties(envelope.signer)
        kinds, numbers = REFERENCE_TYPE, envelope.event_id
        for kind, number in references:
            kinds += " | " + kind
            numbers += " | " + number
        facts["cte"] = cte
        facts["date"] = day
        facts["time"] = moment
        facts["tlc"] = f"(01){gtin}(10){code}" if gtin else uri
        facts["gtin"] = gtin or None
        facts["lot"] = code or None
        facts["product"] = product
        facts["quantity"] = value
        facts["unit"] = unit_text(unit)
        facts["document_types"] = kinds
        facts["document_numbers"] = numbers
        facts["recorded_by"] = signer.name if signer else envelope.signer
        if lot is not None:
            facts.setdefault("source_location", lot.source_location)
            facts.setdefault("source_reference", lot.source_reference)
            if lot.variety and "variety" not in facts:
                facts["variety"] = lot.variety
        else:  # a lot only an imported event knows: its TLC source is where it was made
            facts.setdefault("source_location", fallback_source)
        return tuple(map(facts.get, FILLS))

    def event(self, item: LedgerEvent) -> list[Row]:
        handler = self.handlers.get(item.envelope.kind)
        return handler(item) if handler else []

    def _party(self, did: str) -> TradingPartner | None:
        return self.lookups.parties(did)

    def _commission(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        uri = (envelope.lots or item.lots)[0]
        signer = self._party(envelope.signer)
        origin = data.get("origin")
        here = self.place(envelope.signer, origin)
        facts: dict[str, Any] = {"location": here, "gln": (origin or {}).get("gln")}
        if data.get("variety"):
            facts["variety"] = data["variety"]
        cte = COMMISSION_CTES.get(data.get("cte", ""))
        if cte is None:  # before the field: a producer packs, a processor makes a food
            processor = signer is not None and signer.role == "processor"
            cte = TRANSFORMATION if processor else INITIAL_PACKING
            if processor:
                facts["role"] = "output"
        harvest = data.get("harvest") or {}
        if cte == INITIAL_PACKING and "harvest" not in data and "cooling" not in data:
            pass  # packed with nothing passed on from a harvester or cooler
        elif cte == HARVESTING:
            facts["harvest_date"] = _day(harvest.get("date") or envelope.time)
            facts["harvest_location"] = here
            facts["field"] = harvest.get("field")
        elif cte == INITIAL_PACKING:
            facts["harvest_date"] = _day(harvest.get("date"))
            facts["harvest_location"] = self.place(None, harvest.get("farm"))
            facts["field"] = harvest.get("field")
            cooling = data.get("cooling") or {}
            facts["cooling_date"] = _day(cooling.get("date"))
            facts["cooling_location"] = self.place(None, cooling.get("location"))
        elif cte == FIRST_LAND_BASED_RECEIVING:
            landing = data["landing"]
            facts["landing_date"] = _when(envelope)[0]
            facts["harvest_date"] = _day(landing.get("harvest_from"))
            facts["harvest_end"] = _day(landing.get("harvest_to"))
            facts["harvest_location"] = landing.get("area")
            facts["vessel"] = _vessel(landing["vessel"])
        return [
            self.row(
                cte,
                envelope,
                uri,
                quantity=data.get("quantity"),
                references=_documents(data),
                **facts,
            )
        ]

    def _cool(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        location = data.get("location")
        here = self.place(envelope.signer, location)
        day = _when(envelope)[0]
        references = _documents(data)
        return [
            self.row(
                COOLING,
                envelope,
                uri,
                quantity=data.get("quantity"),
                references=references,
                location=here,
                gln=(location or {}).get("gln"),
                cooling_date=day,
                cooling_location=here,
            )
            for uri in envelope.lots or item.lots
        ]

    def _ship(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        location = data.get("location")
        here = self.place(envelope.signer, location)
        there = self.place(data["to"], None) or data["to"]
        moved, references = _moved(data), _documents(data)
        gln = (location or {}).get("gln")
        return [
            self.row(
                SHIPPING,
                envelope,
                uri,
                quantity=moved.get(uri),
                references=references,
                location=here,
                gln=gln,
                ship_from=here,
                ship_to=there,
            )
            for uri in envelope.lots or item.lots
        ]

    def _receive(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        location = data.get("location")
        here = self.place(envelope.signer, location)
        shipment = self.lookups.shipments(data["shipment"])
        before = None
        if shipment is not None:
            before = self.place(shipment.signer, shipment.location)
        moved, references = _moved(data), _documents(data)
        gln = (location or {}).get("gln")
        return [
            self.row(
                RECEIVING,
                envelope,
                uri,
                quantity=moved.get(uri),
                references=references,
                location=here,
                gln=gln,
                ship_from=before,
                ship_to=here,
                shipment=data["shipment"],
            )
            for uri in envelope.lots or item.lots
        ]

    def _transform(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        location = data.get("location")
        here = self.place(envelope.signer, location)
        references = _documents(data)
        gln = (location or {}).get("gln")
        return [
            self.row(
                TRANSFORMATION,
                envelope,
                lot["batch"],
                quantity=lot["quantity"],
                references=references,
                product=lot.get("product"),
                role=role,
                location=here,
                gln=gln,
            )
            for role, field in (("input", "inputs"), ("output", "outputs"))
            for lot in data[field]
        ]

    # imported EPCIS events

    def _epcis(self, item: LedgerEvent) -> list[Row]:
        envelope = item.envelope
        event = envelope.data["event"]
        step = short_name(event.get("bizStep"), "BizStep-", "bizstep:")
        references = [
            (DOCUMENT_TYPES.get(short_name(t.get("type"), "BTT-", "btt:"), "Business transaction"),
             str(t.get("bizTransaction")))
            for t in as_list(event.get("bizTransactionList"))
            if isinstance(t, Mapping) and t.get("bizTransaction")
        ]  # fmt: skip
        where = place(event.get("bizLocation")) or place(event.get("readPoint"))
        sources = ends(event.get("sourceList"), "source")
        destinations = ends(event.get("destinationList"), "destination")
        if event.get("type") == "TransformationEvent":
            return [
                self.row(
                    TRANSFORMATION,
                    envelope,
                    uri,
                    quantity=quantity,
                    references=references,
                    fallback_source=where if role == "output" else None,
                    role=role,
                    location=where,
                )
                for role, field in (
                    ("input", "inputQuantityList"),
                    ("output", "outputQuantityList"),
                )
                for uri, quantity in quantities(event.get(field))
            ]
        if step not in ("shipping", "receiving"):
            return []
        cte = SHIPPING if step == "shipping" else RECEIVING
        return [
            self.row(
                cte,
                envelope,
                uri,
                quantity=quantity,
                references=references,
                location=where,
                ship_from=sources,
                ship_to=destinations,
            )
            for uri, quantity in quantities(event.get("quantityList"))
        ]


def cte_rows(
    events: Iterable[LedgerEvent], lookups: Lookups, *, product: str | None = None
) -> Iterator[Row]:
    """The spreadsheet rows of *events*, in their order (one per CTE and lot). With
    *product*, only rows whose product description contains it (case-insensitive) — and
    for a transformation, all its rows when any of them does, so inputs stay beside
    outputs."""
    rows = _Rows(lookups)
    needle = product.casefold() if product is not None else None
    for item in events:
        produced = rows.event(item)
        if needle is not None and not any(
            needle in (row[_PRODUCT] or "").casefold() for row in produced
        ):
            continue
        yield from produced
