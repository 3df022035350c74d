"""FDA FSMA 204 (21 CFR part 1 subpart S) electronic sortable spreadsheet: one row per
Critical Tracking Event and traceability lot, one column per Key Data Element, as CSV or
XLSX (docs/fsma204.md has the columns and where each value comes from).

- `cte_rows` is pure: ledger events in, rows out (tuples in `COLUMNS` order, typed: `date`,
  `time`, numbers, text, None for empty), through `Lookups` for parties, lots and shipments.
- `write_csv` and `write_xlsx` stream rows out through `provenance.exchange.spreadsheet`:
  XLSX as one sheet with a bold header row, the header frozen, an autofilter over all
  rows, and real dates, times and numbers so that every column sorts.
- `store_rows` is the adapter: it walks the ledger's CTE kinds once, in log order.

CTEs from our kinds: a producer's commission is **Initial Packing** (the lot's TLC is
assigned there); a processor's commission and every transform are **Transformation**
(one row per input lot and per output lot); ship is **Shipping**; receive is **Receiving**.
Imported EPCIS events count when their bizStep is shipping or receiving, or when they are
TransformationEvents. Readings, inspections, recalls, dispensing (sales to consumers are
not shipping under § 1.1340), attach and detach are not CTEs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, time
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any

from provenance.core import gs1
from provenance.core.envelope import Envelope
from provenance.core.progress import Progress, counted
from provenance.exchange import spreadsheet
from provenance.exchange.epcis_text import as_list, ends, place, quantities, short_name
from provenance.exchange.epcis_vocabulary import IMPORTED, LedgerEvent
from provenance.exchange.spreadsheet import Column, Row

if TYPE_CHECKING:
    from provenance.store.db import Store

INITIAL_PACKING = "Initial Packing"
SHIPPING = "Shipping"
RECEIVING = "Receiving"
TRANSFORMATION = "Transformation"
REFERENCE_TYPE = "Provenance ledger record"  # a "database record" in § 1.1310's sense
CTE_KINDS = ("commission", "ship", "receive", "transform", IMPORTED)


COLUMNS: tuple[Column, ...] = (
    Column("Critical Tracking Event (CTE)", "text", 16),
    Column("Event Date", "date", 12),
    Column("Event Time (UTC)", "time", 10),
    Column("Traceability Lot Code (TLC)", "text", 34),
    Column("GTIN", "text", 16),
    Column("Lot Code", "text", 14),
    Column("Product Description", "text", 28),
    Column("Quantity", "number", 10),
    Column("Unit of Measure", "text", 16),
    Column("Transformation Input or Output", "text", 12),
    Column("Location Description", "text", 40),
    Column("Ship-From Location (Immediate Previous Source)", "text", 40),
    Column("Ship-To Location (Immediate Subsequent Recipient)", "text", 40),
    Column("TLC Source Location", "text", 40),
    Column("TLC Source Reference", "text", 40),
    Column("Reference Document Type", "text", 24),
    Column("Reference Document Number", "text", 30),
    Column("Recorded By", "text", 24),
    Column("Shipment Reference", "text", 30),
)
HEADER = tuple(column.name for column in COLUMNS)
_INDEX = {column.name: position for position, column in enumerate(COLUMNS)}
_PRODUCT = _INDEX["Product Description"]


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


@dataclass(frozen=True)
class TraceabilityLot:
    """What a row needs about a lot: its product, registered quantity (by the commission or
    transform that made it) and where its TLC was assigned."""

    gtin: str
    lot: str
    product: str
    quantity: float | None = None
    unit: str | None = None
    source_location: str | None = None
    source_reference: str | None = None


@dataclass(frozen=True)
class ShipmentOrigin:
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


def location_description(
    party: TradingPartner | None, location: Mapping[str, Any] | None
) -> str | None:
    """The business (its name in the ledger) and the place: the location's name, country,
    GLN and coordinates, whichever are known. The ledger keeps no street addresses or phone
    numbers; a GLN names them in the GS1 registry."""
    parts = [party.name] if party else []
    location = location or {}
    if location.get("name"):
        parts.append(str(location["name"]))
    if location.get("country"):
        parts.append(str(location["country"]))
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
    return _day(text[:10]), time(int(text[11:13]), int(text[14:16]), int(text[17:19]))


@lru_cache(maxsize=4096)
def _day(text: str) -> date:
    return date.fromisoformat(text)


def _split_lot(uri: str) -> tuple[str, str] | None:
    """(GTIN-14, lot) of a canonical lot URI."""
    try:
        return gs1.parse_lot_uri(uri)
    except ValueError:
        return None


# --- events → rows (pure)


class _Rows:
    def __init__(self, lookups: Lookups):
        self.lookups = lookups
        self.handlers = {
            "commission": self._commission,
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
        role: str | None = None,
        location: str | None = None,
        ship_from: str | None = None,
        ship_to: str | None = None,
        references: Iterable[tuple[str, str]] = (),
        shipment: str | None = None,
        product: str | None = None,
        fallback_source: str | None = None,
    ) -> Row:
        facts = self.lookups.lots(uri)
        if facts is not None:
            gtin, lot, product = facts.gtin, facts.lot, product or facts.product
        else:
            gtin, lot = _split_lot(uri) or ("", "")
        if quantity:
            value, unit = quantity.get("value"), quantity.get("unit")
        elif facts is not None:
            value, unit = facts.quantity, facts.unit
        else:
            value, unit = None, None
        if facts is not None:
            source = (facts.source_location, facts.source_reference)
        else:  # a lot only an imported event knows: its TLC source is where it was made
            source = (fallback_source, None)
        day, moment = _when(envelope)
        signer = self.lookups.parties(envelope.signer)
        kinds, numbers = REFERENCE_TYPE, envelope.event_id
        for kind, number in references:
            kinds += " | " + kind
            numbers += " | " + number
        return (
            cte,
            day,
            moment,
            tlc(gtin, lot) if gtin else uri,
            gtin or None,
            lot or None,
            product,
            value,
            unit_text(unit),
            role,
            location,
            ship_from,
            ship_to,
            source[0],
            source[1],
            kinds,
            numbers,
            signer.name if signer else envelope.signer,
            shipment,
        )

    def event(self, item: LedgerEvent) -> list[Row]:
        handler = self.handlers.get(item.envelope.kind)
        return handler(item) if handler else []

    def _party(self, did: str) -> TradingPartner | None:
        return self.lookups.parties(did)

    def _commission(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        uri = (envelope.lots or item.lots)[0]
        signer = self._party(envelope.signer)
        place = location_description(signer, data.get("origin"))
        if signer is not None and signer.role == "processor":
            cte, role = TRANSFORMATION, "output"
        else:
            cte, role = INITIAL_PACKING, None
        return [
            self.row(cte, envelope, uri, quantity=data.get("quantity"), role=role, location=place)
        ]

    def _ship(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        here = location_description(self._party(envelope.signer), data.get("location"))
        there = location_description(self._party(data["to"]), None) or data["to"]
        return [
            self.row(SHIPPING, envelope, uri, location=here, ship_from=here, ship_to=there)
            for uri in envelope.lots or item.lots
        ]

    def _receive(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        here = location_description(self._party(envelope.signer), data.get("location"))
        shipment = self.lookups.shipments(data["shipment"])
        before = None
        if shipment is not None:
            before = location_description(self._party(shipment.signer), shipment.location)
        return [
            self.row(
                RECEIVING,
                envelope,
                uri,
                location=here,
                ship_from=before,
                ship_to=here,
                shipment=data["shipment"],
            )
            for uri in envelope.lots or item.lots
        ]

    def _transform(self, item: LedgerEvent) -> list[Row]:
        envelope, data = item.envelope, item.envelope.data
        here = location_description(self._party(envelope.signer), data.get("location"))
        return [
            self.row(
                TRANSFORMATION,
                envelope,
                lot["batch"],
                quantity=lot["quantity"],
                role=role,
                location=here,
                product=lot.get("product"),
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
                    role=role,
                    location=where,
                    references=references,
                    fallback_source=where if role == "output" else None,
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
                location=where,
                ship_from=sources,
                ship_to=destinations,
                references=references,
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


# --- writing (provenance.exchange.spreadsheet does the formats)

SHEET = "FSMA 204"


def write_csv(rows: Iterable[Row], out: IO[str]) -> int:
    """Header and rows as CSV (RFC 4180, dates ``YYYY-MM-DD``, times ``HH:MM:SS``, empty
    cells empty, formula-like text defused); returns the number of rows."""
    return spreadsheet.write_csv(COLUMNS, rows, out)


def write_xlsx(rows: Iterable[Row], out: IO[bytes]) -> int:
    """Header and rows as an XLSX workbook with one sheet, ``FSMA 204``: bold header,
    frozen, with an autofilter over every row; dates, times and quantities as typed cells.
    *out* need not be seekable (stdout works). Returns the number of rows."""
    return spreadsheet.write_xlsx(COLUMNS, rows, out, sheet=SHEET)


# --- adapter: a Store


class _StoreLookups:
    """Parties, lots and shipments for rows read from a Store. The walk of the log teaches
    them as it goes: a commission or a transform that makes a lot comes before any event of
    that lot, and a ship before its receive, so most answers need no query. Anything not
    seen (say, a lot only an imported event names) is asked of the store, and cached."""

    def __init__(self, store: Store):
        self.store = store
        self.parties = {
            identity.did: TradingPartner(identity.name, identity.role or identity.type)
            for identity in store.identities()
        }
        self.lots: dict[str, TraceabilityLot | None] = {}
        self.open_shipments: dict[str, ShipmentOrigin] = {}

    def lookups(self) -> Lookups:
        return Lookups(self.parties.get, self.lot, self.shipment)

    def observe(self, envelope: Envelope) -> None:
        """Learn from an event of the walk (before it is filtered)."""
        kind = envelope.kind
        if kind == "ship":
            self.open_shipments[envelope.event_id] = ShipmentOrigin.of(envelope)
        elif kind == "commission":
            data = envelope.data
            uri = (envelope.lots or ("",))[0]
            self.lots[uri] = _facts(
                data["gtin"],
                data["lot"],
                data["product"],
                data.get("quantity"),
                self.parties.get(envelope.signer),
                data.get("origin"),
                uri,
            )
        elif kind == "transform":
            data = envelope.data
            signer = self.parties.get(envelope.signer)
            for made in data["outputs"]:
                if "product" in made:  # a new lot, made by this transform
                    gtin, lot = _split_lot(made["batch"]) or ("", "")
                    self.lots[made["batch"]] = _facts(
                        gtin,
                        lot,
                        made["product"],
                        made["quantity"],
                        signer,
                        data.get("location"),
                        made["batch"],
                    )

    def lot(self, uri: str) -> TraceabilityLot | None:
        if uri not in self.lots:
            self.lots[uri] = _lot_facts(self.store, uri, self.parties)
        return self.lots[uri]

    def shipment(self, event_id: str) -> ShipmentOrigin | None:
        found = self.open_shipments.pop(event_id, None)  # a shipment is received once
        if found is not None:
            return found
        try:
            stored = self.store.find_event(bytes.fromhex(event_id))
        except ValueError:
            stored = None
        return ShipmentOrigin.of(stored.envelope) if stored is not None else None


def store_lookups(store: Store) -> Lookups:
    """Parties, lots (with their TLC source, from the event that made them) and shipments
    from a Store, each cached."""
    return _StoreLookups(store).lookups()


def _facts(
    gtin: str,
    lot: str,
    product: str,
    quantity: Mapping[str, Any] | None,
    maker: TradingPartner | None,
    location: Mapping[str, Any] | None,
    uri: str,
) -> TraceabilityLot:
    gln = (location or {}).get("gln")
    return TraceabilityLot(
        gtin,
        lot,
        product,
        (quantity or {}).get("value"),
        (quantity or {}).get("unit"),
        location_description(maker, location),
        f"GLN {gln}" if gln else uri,
    )


def _lot_facts(
    store: Store, uri: str, parties: Mapping[str, TradingPartner]
) -> TraceabilityLot | None:
    lot = store.lot_by_uri(uri)
    if lot is None:
        return None
    quantity: Mapping[str, Any] | None = None
    location: Mapping[str, Any] | None = None
    origin = store.event_at(lot.origin_event)
    signer = None
    if origin is not None:
        envelope = origin.envelope
        signer = parties.get(envelope.signer)
        data = envelope.data
        if envelope.kind == "commission":
            quantity, location = data.get("quantity"), data.get("origin")
        elif envelope.kind == "transform":
            location = data.get("location")
            made = [o for o in data.get("outputs", ()) if o.get("batch") == uri]
            quantity = made[0].get("quantity") if made else None
    return _facts(lot.gtin, lot.lot, lot.product, quantity, signer, location, uri)


def store_rows(
    store: Store,
    *,
    product: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    progress: Progress | None = None,
) -> Iterator[Row]:
    """The rows for the whole ledger (one consistent read), in log order: events of the CTE
    kinds with ``since_us <= time < until_us``, optionally only for *product*. *progress*
    is told how far through the log's events the walk is (`provenance.core.progress`)."""
    with store.snapshot():
        lookups = _StoreLookups(store)

        bounded = since_us is not None or until_us is not None
        subject = store.subject

        def events() -> Iterator[LedgerEvent]:
            rows = counted(
                store.event_rows(kinds=CTE_KINDS),
                store.log_size(),
                progress,
                position=lambda row: row[0],  # its log index
            )
            for row in rows:
                stored = store.event_from_row(row)
                envelope = stored.envelope
                lookups.observe(envelope)
                if bounded:
                    moment = envelope.time_us
                    if (since_us is not None and moment < since_us) or (
                        until_us is not None and moment >= until_us
                    ):
                        continue
                yield LedgerEvent(envelope, tuple(map(subject, stored.lots)))

        yield from cte_rows(events(), lookups.lookups(), product=product)
